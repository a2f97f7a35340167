"""The transaction workload of tests/tests/drivers_transactions.rs, shared by its Python clients.

Every client (one per driver, each with the driver's default settings) runs a phase per call, or
both in turn ("all", their transcripts merged):

  reads   ITERATIONS reads by primary key of READ_KEYS in turn, each in the driver's own
          transaction handling and committed; prints {"reads": [value, ...]}.
  writes  connection A updates KEY inside a transaction, reads its own write, connection B reads
          the old value before A commits, both read the new one after; then A updates again and
          rolls back, and A, B and a fresh connection C read the committed value; prints every
          value read (the keys of WRITES_KEYS).

The table has rows (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'); the test sets KEY back to
INITIAL before each phase.
"""
import json
import sys

ITERATIONS = 200
READ_KEYS = (1, 2, 3)
KEY = 2
INITIAL = "two"
COMMITTED = "two-committed"
ROLLED_BACK = "two-rolled-back"


class Args:
    """HOST PORT PHASE TABLE [MODE] from the command line."""

    def __init__(self):
        if len(sys.argv) < 5 or sys.argv[3] not in ("reads", "writes", "all"):
            sys.exit(f"usage: {sys.argv[0]} HOST PORT reads|writes|all TABLE [MODE]")
        self.host = sys.argv[1]
        self.port = int(sys.argv[2])
        self.phase = sys.argv[3]
        self.table = sys.argv[4]
        self.mode = sys.argv[5] if len(sys.argv) > 5 else None

    def url(self, scheme):
        """A SQLAlchemy-style URL for the superuser on the app database."""
        return f"{scheme}://postgres@{self.host}:{self.port}/app"

    def select(self, placeholder):
        """The primary-key read, with the driver's parameter placeholder."""
        return f"SELECT v FROM {self.table} WHERE id = {placeholder}"

    def update(self, value_placeholder, key_placeholder):
        """The one-key write, with the driver's parameter placeholders."""
        return f"UPDATE {self.table} SET v = {value_placeholder} WHERE id = {key_placeholder}"


def keys():
    """The keys the reads phase reads, in order."""
    for i in range(ITERATIONS):
        yield READ_KEYS[i % len(READ_KEYS)]


def run(phase, reads, writes):
    """Runs `phase` with the phases' functions (each returns its transcript); prints the
    transcript."""
    out = {}
    if phase in ("reads", "all"):
        out.update(reads())
    if phase in ("writes", "all"):
        out.update(writes())
    print(json.dumps(out, sort_keys=True))
