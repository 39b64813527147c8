import json

from django.core.management.base import BaseCommand, CommandError

from timeseries.datasets import DATASETS
from timeseries.lifecycle import retention_apply, retention_preview


class Command(BaseCommand):
    help = (
        "Show (--dry-run, the default) or remove (--apply) the rows past each dataset's retention "
        "horizon (TSM_RETENTION): whole chunks on TimescaleDB, batched deletes on plain PostgreSQL."
    )

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--dry-run", action="store_true", help="only show what would be removed (default)")
        mode.add_argument("--apply", action="store_true", help="remove it")
        parser.add_argument("--dataset", action="append", choices=list(DATASETS), help="only this dataset (repeatable)")
        parser.add_argument("--batch-rows", type=int, default=None, help="rows per DELETE on the plain lane")
        parser.add_argument("--json", action="store_true", help="print JSON, one object per dataset")

    def handle(self, *args, **options):
        if options["batch_rows"] is not None and options["batch_rows"] < 1:
            raise CommandError(f"--batch-rows={options['batch_rows']} must be at least 1")
        names = options["dataset"] or list(DATASETS)
        for name in names:
            if options["apply"]:
                out = retention_apply(dataset=name, batch_rows=options["batch_rows"]).as_dict()
                text = (
                    f"{name}: nothing to do (kept forever)"
                    if out["horizon"] is None
                    else f"{name}: removed {out['rows_deleted']} row(s) in {out['batches']} batch(es), "
                    f"{out['chunks_dropped']} chunk(s) dropped (time before {out['cutoff']}, horizon {out['horizon']})"
                )
            else:
                out = retention_preview(dataset=name).as_dict()
                if out["horizon"] is None:
                    text = f"{name}: kept forever (retention none) - nothing would be removed"
                elif not out["series"]:
                    text = f"{name}: nothing would be removed (time before {out['cutoff']}, horizon {out['horizon']})"
                else:
                    text = (
                        f"{name}: would remove ~{out['rows_estimate']} row(s) of {out['series']} series, "
                        f"time {out['oldest']} .. {out['newest']} (before {out['cutoff']}, horizon "
                        f"{out['horizon']}) by {out['method']}"
                        + (f", {len(out['chunks'])} chunk(s)" if out["chunks"] else "")
                    )
            self.stdout.write(json.dumps(out, default=str) if options["json"] else text)
