"""One fake per API, each written from that vendor's documentation."""

from __future__ import annotations

from .base import Plan, SandboxApi
from .parcellab import ParcelLabApi
from .shipengine import ShipEngineApi
from .trackflow import TrackFlowApi
from .trackingmore import TrackingMoreApi
from .whereparcel import WhereParcelApi

API_CLASSES: tuple[type[SandboxApi], ...] = (
    WhereParcelApi,
    TrackingMoreApi,
    TrackFlowApi,
    ParcelLabApi,
    ShipEngineApi,
)
API_NAMES: tuple[str, ...] = tuple(cls.name for cls in API_CLASSES)

__all__ = ["API_CLASSES", "API_NAMES", "Plan", "SandboxApi"]
