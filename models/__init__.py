"""The one-map database: SQLAlchemy 2 tables only (no queries, no HTTP)."""

from models.alert import AlertEvent, WebhookDelivery, WebhookSubscription
from models.backfill import BackfillRun, BackfillUnit
from models.base import Base
from models.camera import Camera, CameraPreset
from models.case import Case, CaseEvent, Evidence
from models.client import ApiClient, ClientJurisdiction, IdempotencyKey
from models.detection import Detection, LayerHit
from models.jurisdiction import Jurisdiction
from models.layer import FarmlandObservation, Layer, LayerFeature, LayerVersion
from models.scene import IngestJob, Scene

__all__ = [
    "AlertEvent",
    "ApiClient",
    "BackfillRun",
    "BackfillUnit",
    "Base",
    "Camera",
    "CameraPreset",
    "Case",
    "CaseEvent",
    "ClientJurisdiction",
    "Detection",
    "Evidence",
    "FarmlandObservation",
    "IdempotencyKey",
    "IngestJob",
    "Jurisdiction",
    "Layer",
    "LayerFeature",
    "LayerHit",
    "LayerVersion",
    "Scene",
    "WebhookDelivery",
    "WebhookSubscription",
]
