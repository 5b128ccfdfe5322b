"""Order-line snapshots: ``OrderItem.snapshot`` freezes what a line grants when it is created.

Existing rows: lines of **pending** orders get the snapshot of their offer as it is now — the
contents a payment would have granted before this migration, so nothing changes for them.
Lines of paid, cancelled and refunded orders keep ``NULL``: they will never be granted again,
and their batches (``QuotaBatch.order_item``) already record what was granted.
"""

from django.db import migrations, models


def snapshot_pending_lines(apps, schema_editor):
    OrderItem = apps.get_model("billable", "OrderItem")
    OfferItem = apps.get_model("billable", "OfferItem")
    lines = OrderItem.objects.filter(order__status="pending", snapshot__isnull=True)
    offer_ids = set(lines.values_list("offer_id", flat=True))
    contents: dict = {}
    for item in (OfferItem.objects.filter(offer_id__in=offer_ids).select_related("product")
                 .order_by("offer_id", "id")):
        contents.setdefault(item.offer_id, []).append({
            "product_id": item.product_id, "product_key": item.product.product_key,
            "quantity": item.quantity, "period_unit": item.period_unit,
            "period_value": item.period_value,
        })
    for line in lines.iterator(chunk_size=500):
        line.snapshot = {"v": 1, "items": contents.get(line.offer_id, [])}
        line.save(update_fields=["snapshot"])


class Migration(migrations.Migration):

    dependencies = [
        ("billable", "0004_api_keys"),
    ]

    operations = [
        migrations.AddField(
            model_name="orderitem",
            name="snapshot",
            field=models.JSONField(
                blank=True, editable=False, null=True,
                help_text="The offer's items when the order was created; payment grants "
                          "exactly these.",
            ),
        ),
        migrations.RunPython(snapshot_pending_lines, migrations.RunPython.noop),
    ]
