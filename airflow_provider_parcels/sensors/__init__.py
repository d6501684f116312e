"""Sensors of the parcels provider (``parcel_status.ParcelStatusSensor``)."""
