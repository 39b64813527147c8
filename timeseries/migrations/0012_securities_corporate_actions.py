"""The security master and corporate actions (issue #17): reference data, plain tables on both lanes
(their ``time`` is a plain DateTimeField, so django-timescaledb makes no hypertable of them)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("timeseries", "0011_apitoken_feed"),
    ]

    operations = [
        migrations.CreateModel(
            name="Security",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "known_at",
                    models.DateTimeField(help_text="when a market participant could first have known the row"),
                ),
                ("recorded_at", models.DateTimeField(help_text="when tsm committed this version")),
                (
                    "time",
                    models.DateTimeField(
                        help_text="the listing instant (input column listed_at)", verbose_name="listed_at"
                    ),
                ),
                ("security_id", models.CharField(max_length=32)),
                ("symbol", models.CharField(help_text="the ticker it listed under", max_length=32)),
                ("name", models.TextField(blank=True, default="")),
                ("exchange", models.CharField(help_text="ISO 10383 MIC (XNYS, XNAS, ...)", max_length=16)),
                ("delisted_at", models.DateTimeField(blank=True, null=True)),
                ("figi", models.CharField(blank=True, default="", max_length=12)),
            ],
            options={
                "verbose_name": "security",
                "verbose_name_plural": "securities",
                "db_table": "securities",
                "indexes": [models.Index(fields=["symbol"], name="securities_symbol")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("security_id", "known_at", "recorded_at"), name="securities_version"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="CorporateAction",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "known_at",
                    models.DateTimeField(help_text="when a market participant could first have known the row"),
                ),
                ("recorded_at", models.DateTimeField(help_text="when tsm committed this version")),
                (
                    "time",
                    models.DateTimeField(
                        help_text="the first session on the new basis (input column ex_date)", verbose_name="ex_date"
                    ),
                ),
                ("security_id", models.CharField(max_length=32)),
                ("symbol", models.CharField(help_text="the ticker just before ex_date", max_length=32)),
                ("action_type", models.CharField(max_length=16)),
                (
                    "ratio",
                    models.DecimalField(
                        blank=True,
                        decimal_places=6,
                        help_text="split: new shares per old share",
                        max_digits=18,
                        null=True,
                    ),
                ),
                (
                    "amount",
                    models.DecimalField(
                        blank=True, decimal_places=6, help_text="cash_dividend: per share", max_digits=18, null=True
                    ),
                ),
                ("currency", models.CharField(blank=True, default="USD", max_length=3)),
                (
                    "new_symbol",
                    models.CharField(blank=True, default="", help_text="symbol_change: the new ticker", max_length=32),
                ),
                ("record_date", models.DateTimeField(blank=True, null=True)),
                ("pay_date", models.DateTimeField(blank=True, null=True)),
                ("source", models.CharField(blank=True, default="", max_length=64)),
            ],
            options={
                "db_table": "corporate_actions",
                "indexes": [
                    models.Index(fields=["time"], name="corporate_actions_time"),
                    models.Index(fields=["new_symbol"], name="corporate_actions_new_symbol"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("security_id", "action_type", "time", "known_at", "recorded_at"),
                        name="corporate_actions_version",
                    )
                ],
            },
        ),
    ]
