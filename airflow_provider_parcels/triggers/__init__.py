"""Triggers of the parcels provider (``parcel_status.ParcelStatusTrigger``)."""
