"""
Push instead of poll: the webhook receiver (a FastAPI app the provider's Airflow plugin mounts in
the API server at ``/parcels/webhooks/{conn_id}``), the ``parcel_subscriptions`` table, and the
asset events accepted deliveries become. See ``docs/webhooks.md``.

The receiver owns no parsing: a delivery goes through the API module's own reader
(``TrackFlowHook.parse_webhook``, ``WhereParcelHook.parse_webhook``) and lands through
``ParcelWarehouse.load``, like a tracking answer.
"""
