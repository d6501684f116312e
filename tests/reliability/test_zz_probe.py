import pytest
from reliability_support import CARRIER

from airflow_provider_parcels.warehouse import ParcelWarehouse

BAD = ["", None, "   ", "A" * 200, "ÄÖÜ12345", "AB\x00CD", "AB\nCD", "1'; DROP TABLE parcel_tracking;--"]

@pytest.mark.parametrize("db", ["sqlite_conn_id", "postgres_conn_id"])
def test_probe(db, connect, sandbox, request):
    conn_id = request.getfixturevalue(db)
    api = "trackflow"
    hook = connect(api, requests_per_minute=60000)
    items = [{"carrier": CARRIER[api], "tracking_number": "DLVOK0001"}]
    items += [{"carrier": CARRIER[api], "tracking_number": n} for n in BAD]
    items += [{"carrier": "ups\x00", "tracking_number": "X1"}]
    res = hook.track(items)
    wh = ParcelWarehouse(conn_id)
    try:
        print(wh.load(res))
    except Exception as e:
        print("LOAD FAILED", type(e), e)
    try:
        print(wh.load(res * 1000))
    except Exception as e:
        print("LOAD FAILED", type(e), e)
    for r in wh.dump("parcel_tracking"):
        print(r[:3], r[16])
