"""A local server that speaks the five tracking APIs, for demos, tests and your own DAG tests.

``python -m airflow_provider_parcels.sandbox`` (or :class:`SandboxServer` in-process, or the
``parcels_sandbox`` pytest fixture of :mod:`.pytest_plugin`) serves WhereParcel
(``/whereparcel``), TrackingMore (``/trackingmore/v2``), TrackFlow (``/trackflow``), parcelLab
(``/parcellab``) and ShipEngine (``/shipengine``) on one port, written from the vendors' docs
alone: it never imports the client code of this package. Point a connection's host at
``http://127.0.0.1:PORT/<prefix>``; any key starting with ``sandbox`` is valid (WhereParcel:
``Bearer KEY:SECRET``), and a key ending in ``-<plan>`` (``sandbox-pro``, ``sandbox-growth``)
gets that plan's quota and batch size. See ``docs/sandbox.md`` for the full contract.

Tracking-number scheme
----------------------
The outcome is chosen by the number's prefix (case-insensitive):

==============  =====================================================================
``DLV``         delivered
``TRN``         in transit
``OFD``         out for delivery
``EXC``         exception
``FAT``         failed delivery attempt
``PUP``         waiting at a pickup point (TrackingMore: ``transit``)
``EXP``         expired (TrackingMore ``expired``, parcelLab ``Expired``; others: exception)
``PEN``         pending: known, no carrier scan yet
``INF``         info received / label created
``UNK``         a status value the docs do not list (``on_hold``, ``alert``, ``UN``, ``Held``)
``NFD``         not found (per-item failure, ``notfound`` or 404, as the API does)
``NEW``         TrackingMore only: absent until created with ``POST /trackings/post`` or
                ``/trackings/batch``; the rest of the number then follows this scheme
                (``NEWDLV1`` is delivered once created); other APIs ignore ``NEW``
``POLLD<k>``    in transit for the first k lookups of that number (per API), then delivered
``POLLX<k>``    in transit for k lookups, then exception
``SECD<t>``     in transit until t seconds after the first lookup (per API), then delivered
``SECX<t>``     in transit until t seconds after the first lookup, then exception
==============  =====================================================================

Any other number (it may look real) gets a stable history derived from a SHA-256 of the
upper-cased number, marked ``[sandbox]`` at the end of every event text and after every city:
40% delivered, 30% in transit (some of them only picked up: WhereParcel ``picked_up``), 8% out
for delivery, 7% exception, 7% failed attempt, 8% at a pickup point; 1 to 6 events, the newest
1 to 18 hours before the start of the current UTC day (so stable within a day); an estimated
delivery that is in the past for about a third of the parcels not yet delivered (late).
A *lookup* is one tracking answer for that number: a WhereParcel item, a TrackingMore item of
``GET /trackings/get?numbers=`` / ``realtime`` / the single GET, a TrackFlow single or batch
item, a tracking of a parcelLab order GET, a ShipEngine GET.

Fault spec
----------
``--faults "503=0.1,timeout=0.05,badjson=0.02,reset=0.01,429=0.05"`` (or
``configure(faults=...)``): each API request draws one number from ``random.Random(seed)``
and the fractions are stacked in the order 429, 503, timeout, badjson, reset (they must add up
to at most 1). ``429`` answers that API's quota refusal (TrackingMore: HTTP 200 with
``meta.code`` 4029) with a 1 s wait, ``503`` that API's 5xx body, ``timeout`` sleeps
``timeout_delay`` seconds and then answers normally, ``badjson`` answers 200 with a truncated
JSON body, ``reset`` drops the connection with a TCP reset and no answer. The same seed gives
the same fault sequence from start, from ``reset()`` and from any ``configure`` that sets
``faults`` or ``seed``.
"""

from __future__ import annotations

from .apis import API_NAMES
from .server import SandboxServer
from .settings import SandboxSettings

__all__ = ["API_NAMES", "SandboxServer", "SandboxSettings"]
