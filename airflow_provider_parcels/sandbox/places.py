"""Static data the sandbox draws plausible parcels from: cities, countries, carriers, texts.

Nothing here is random at run time: :mod:`.outcomes` picks entries with a hash of the
tracking number, so the same number always travels the same route.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Place:
    """A city where a carrier event happens.

    :param city: city name as a carrier writes it.
    :param region: state, province or district code ("" when the country has none).
    :param postal: postal code.
    :param country: ISO 3166-1 alpha-2 country code.
    :param offset_minutes: local UTC offset (no daylight saving in the sandbox).
    :param lat: latitude.
    :param lon: longitude.
    """

    city: str
    region: str
    postal: str
    country: str
    offset_minutes: int
    lat: float
    lon: float

    @property
    def label(self) -> str:
        """``"City, REGION"`` (or just the city), the usual one-line location."""
        return f"{self.city}, {self.region}" if self.region else self.city


#: ISO2 -> (English name as TrackingMore writes it, ISO3)
COUNTRIES: dict[str, tuple[str, str]] = {
    "US": ("United States", "USA"),
    "DE": ("Germany", "DEU"),
    "KR": ("Korea, South", "KOR"),
    "GB": ("United Kingdom", "GBR"),
    "FR": ("France", "FRA"),
    "CN": ("China", "CHN"),
    "PH": ("Philippines", "PHL"),
    "IN": ("India", "IND"),
    "JP": ("Japan", "JPN"),
}

CITIES: dict[str, tuple[Place, ...]] = {
    "US": (
        Place("New York", "NY", "10001", "US", -300, 40.7506, -73.9972),
        Place("Los Angeles", "CA", "90001", "US", -480, 33.9731, -118.2479),
        Place("Louisville", "KY", "40201", "US", -300, 38.2527, -85.7585),
        Place("Sarcoxie", "MO", "64862", "US", -300, 37.0776, -94.1258),
        Place("Las Vegas", "NV", "89118", "US", -480, 36.0810, -115.2169),
        Place("Chicago", "IL", "60601", "US", -360, 41.8853, -87.6216),
        Place("Renton", "WA", "98056", "US", -480, 47.5126, -122.1960),
    ),
    "DE": (
        Place("Berlin", "BE", "10115", "DE", 60, 52.5321, 13.3849),
        Place("Hamburg", "HH", "20095", "DE", 60, 53.5503, 10.0007),
        Place("Leipzig", "SN", "04179", "DE", 60, 51.3570, 12.3162),
        Place("München", "BY", "80331", "DE", 60, 48.1374, 11.5755),
        Place("Köln", "NW", "50667", "DE", 60, 50.9384, 6.9599),
    ),
    "KR": (
        Place("서울 강남구", "", "06236", "KR", 540, 37.4979, 127.0276),
        Place("서울 송파구", "", "05551", "KR", 540, 37.5145, 127.1059),
        Place("경기 성남시", "", "13120", "KR", 540, 37.4200, 127.1267),
        Place("부산 해운대구", "", "48094", "KR", 540, 35.1631, 129.1635),
    ),
    "GB": (
        Place("London", "", "EC1A 1BB", "GB", 0, 51.5203, -0.0979),
        Place("Manchester", "", "M1 1AE", "GB", 0, 53.4808, -2.2426),
    ),
    "FR": (
        Place("Paris", "", "75001", "FR", 60, 48.8626, 2.3363),
        Place("Lyon", "", "69001", "FR", 60, 45.7676, 4.8344),
    ),
    "CN": (
        Place("Shenzhen", "GD", "518000", "CN", 480, 22.5431, 114.0579),
        Place("Shanghai", "SH", "200000", "CN", 480, 31.2304, 121.4737),
    ),
    "PH": (Place("Manila", "", "1000", "PH", 480, 14.5995, 120.9842),),
    "IN": (
        Place("Mumbai", "MH", "400001", "IN", 330, 18.9388, 72.8354),
        Place("New Delhi", "DL", "110001", "IN", 330, 28.6139, 77.2090),
    ),
    "JP": (Place("Tokyo", "", "100-0001", "JP", 540, 35.6812, 139.7671),),
}

COUNTRY_CODES: tuple[str, ...] = tuple(CITIES)


@dataclass(frozen=True)
class Carrier:
    """A carrier the sandbox knows by name.

    :param name: display name.
    :param country: ISO2 country whose cities its parcels mostly visit.
    :param website: tracking web site.
    :param phone: customer-service phone number.
    """

    name: str
    country: str
    website: str
    phone: str


#: Carrier codes of all five APIs (they overlap), -> Carrier.
CARRIERS: dict[str, Carrier] = {
    "usps": Carrier("USPS", "US", "https://www.usps.com", "1-800-275-8777"),
    "stamps_com": Carrier("Stamps.com", "US", "https://www.stamps.com", "1-888-434-0055"),
    "ups": Carrier("UPS", "US", "https://www.ups.com", "1-800-742-5877"),
    "fedex": Carrier("FedEx", "US", "https://www.fedex.com", "1-800-463-3339"),
    "dhl": Carrier("DHL", "DE", "https://www.dhl.de", "+49 228 4333112"),
    "dhl_express": Carrier("DHL Express", "DE", "https://www.dhl.com", "+49 228 4333112"),
    "deutsche-post": Carrier("Deutsche Post", "DE", "https://www.deutschepost.de", "+49 228 4333118"),
    "dpd": Carrier("DPD", "DE", "https://www.dpd.com", "+49 6021 843 0"),
    "hermes": Carrier("Hermes", "DE", "https://www.myhermes.de", "+49 40 537 55 847"),
    "gls": Carrier("GLS", "DE", "https://gls-group.com", "+49 6677 646 907 000"),
    "royal-mail": Carrier("Royal Mail", "GB", "https://www.royalmail.com", "+44 3457 740 740"),
    "china-ems": Carrier("China EMS", "CN", "http://www.ems.com.cn", "11183"),
    "phlpost": Carrier("PHLPost", "PH", "https://www.phlpost.gov.ph", "+ (63) 854-9825"),
    "korea-post": Carrier("Korea Post", "KR", "https://www.epost.go.kr", "82-2-2108-9895"),
    "indiapost": Carrier("India Post EMS", "IN", "https://www.indiapost.gov.in", "1800 266 6868"),
    "kr.cj": Carrier("CJ대한통운", "KR", "https://www.cjlogistics.com", "1588-1255"),
    "kr.hanjin": Carrier("한진택배", "KR", "https://www.hanjin.com", "1588-0011"),
    "de.gls": Carrier("GLS Germany", "DE", "https://gls-group.com/DE", "+49 6677 646 907 000"),
    "de.dhl": Carrier("DHL Paket", "DE", "https://www.dhl.de", "+49 228 4333112"),
    "us.usps": Carrier("USPS", "US", "https://www.usps.com", "1-800-275-8777"),
    "us.ups": Carrier("UPS", "US", "https://www.ups.com", "1-800-742-5877"),
    "us.fedex": Carrier("FedEx", "US", "https://www.fedex.com", "1-800-463-3339"),
}


def carrier_info(code: str | None) -> Carrier:
    """The carrier for ``code``; unknown codes get a generic entry (country from ``xx.`` if present)."""
    code = (code or "").strip().lower()
    if code in CARRIERS:
        return CARRIERS[code]
    country = code.split(".", 1)[0].upper() if "." in code else ""
    return Carrier(code.upper() or "Unknown carrier", country, "", "")


#: English event texts per event kind (variants picked by hash).
EVENT_TEXTS: dict[str, tuple[str, ...]] = {
    "info_received": ("Shipment information received", "Label created, awaiting item"),
    "picked_up": ("Picked up by carrier", "Shipment picked up"),
    "in_transit": (
        "Departed sort facility",
        "Arrived at sort facility",
        "In transit to next facility",
        "Package transferred to destination facility",
    ),
    "out_for_delivery": ("Out for Delivery",),
    "delivered": ("Delivered", "Delivered, In/At Mailbox", "Delivered to recipient"),
    "failed_attempt": ("Delivery attempted - recipient not available", "Delivery attempted - address closed"),
    "available_for_pickup": ("Available for pickup at service point",),
    "exception": ("Returned to sender", "Held at customs", "Damaged in transit"),
    "expired": ("No further tracking updates",),
    "unknown": ("Carrier status update",),
}

#: Korean event texts (WhereParcel ``kr.*`` carriers, as in the WhereParcel doc).
EVENT_TEXTS_KO: dict[str, str] = {
    "info_received": "접수",
    "picked_up": "집하",
    "in_transit": "간선상차",
    "out_for_delivery": "배달 출발",
    "delivered": "배달완료",
    "failed_attempt": "미배달",
    "available_for_pickup": "보관 중",
    "exception": "반송",
    "expired": "조회 기간 만료",
    "unknown": "상태 확인 중",
}

#: The carrier's own status code per event kind (ShipEngine ``carrier_status_code``, parcelLab
#: ``courier_status``).
EVENT_CODES: dict[str, str] = {
    "info_received": "MA",
    "picked_up": "03",
    "in_transit": "10",
    "out_for_delivery": "OF",
    "delivered": "01",
    "failed_attempt": "02",
    "available_for_pickup": "PU",
    "exception": "EX",
    "expired": "XP",
    "unknown": "ZZ",
}
