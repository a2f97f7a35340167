"""A one-file Django app running the workload of tx_workload.py through the Django ORM.

Settings are configured in code: the default database has `ATOMIC_REQUESTS = True`, so each
request of a real app runs in one transaction; here `transaction.atomic()` around each
"request" does what the request handler would. A second alias (`other`) on the same database
is connection B, a third (`fresh`) is connection C. Django picks psycopg 3 when it is
installed (psycopg 2 otherwise), with its default client-side parameter binding.

Usage: tx_django.py HOST PORT reads|writes|all TABLE
"""
import django
from django.conf import settings

from tx_workload import COMMITTED, KEY, ROLLED_BACK, Args, keys, run

ARGS = Args()


def database():
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "app",
        "USER": "postgres",
        "HOST": ARGS.host,
        "PORT": str(ARGS.port),
        "ATOMIC_REQUESTS": True,
        "OPTIONS": {"sslmode": "disable", "connect_timeout": 10},
    }


settings.configure(
    DATABASES={"default": database(), "other": database(), "fresh": database()},
    INSTALLED_APPS=[],
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()

from django.db import connections, models, transaction  # noqa: E402 (needs the settings)


class Item(models.Model):
    id = models.IntegerField(primary_key=True)
    v = models.TextField()

    class Meta:
        app_label = "tx_check"
        db_table = ARGS.table
        managed = False


def request(alias, key=KEY):
    """One "request": reads `key` in its own transaction on `alias`."""
    with transaction.atomic(using=alias):
        return Item.objects.using(alias).get(pk=key).v


def reads():
    return {"reads": [request("default", key) for key in keys()]}


def writes():
    out = {"b_before": [request("other") for _ in range(3)]}
    with transaction.atomic():
        out["a_before_write"] = Item.objects.get(pk=KEY).v
        out["updated"] = Item.objects.filter(pk=KEY).update(v=COMMITTED)
        out["a_own_write"] = Item.objects.get(pk=KEY).v
        out["b_during"] = request("other")
    out["a_after_commit"] = request("default")
    out["b_after_commit"] = request("other")
    with transaction.atomic():
        out["rolled_back_updated"] = Item.objects.filter(pk=KEY).update(v=ROLLED_BACK)
        out["a_own_rollback"] = Item.objects.get(pk=KEY).v
        out["b_during_rollback"] = request("other")
        transaction.set_rollback(True)
    out["a_after_rollback"] = request("default")
    out["b_after_rollback"] = request("other")
    out["c_after_rollback"] = request("fresh")
    return out


run(ARGS.phase, reads, writes)
connections.close_all()
