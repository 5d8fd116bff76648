"""The admin role may view events in Django admin (leads are browsable there, events
read-only beside them); see scoring.roles.GROUP_MODEL_PERMISSIONS."""

from django.db import migrations


def grant(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.filter(
        content_type__app_label="scoring", codename="view_event"
    ).first()
    group = Group.objects.filter(name="admin").first()
    if permission and group:
        group.permissions.add(permission)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name="admin").first()
    if group:
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="scoring", codename="view_event")
        )


class Migration(migrations.Migration):
    dependencies = [("scoring", "0016_user_audit")]

    operations = [migrations.RunPython(grant, revoke)]
