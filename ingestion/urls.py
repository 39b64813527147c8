from django.urls import path

from ingestion.api import BatchView, IngestView

urlpatterns = [
    path("ingest/batches/<uuid:batch_id>/", BatchView.as_view(), name="ingest-batch"),
    path("ingest/<str:dataset>/", IngestView.as_view(), name="ingest"),
]
