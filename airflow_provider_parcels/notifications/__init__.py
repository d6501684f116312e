"""Notifiers and Deadline Alert callbacks of the parcels provider (``parcel_report``)."""
