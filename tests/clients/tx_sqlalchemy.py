"""SQLAlchemy 2 with default settings, running the workload of tx_workload.py.

Modes:
  orm-psycopg   ORM `Session` over psycopg 3 (`postgresql+psycopg://`): one session per unit of
                work, `session.get` by primary key, `session.commit()`.
  orm-asyncpg   the same with `AsyncSession` over asyncpg (`postgresql+asyncpg://`).
  core-psycopg  an `engine.connect()` loop over psycopg 3: `conn.execute(select(...))`,
                `conn.commit()`.

Sessions and connections autobegin a transaction at their first statement (the DBAPI
connection is never in autocommit), and the pool resets each connection it takes back.

Usage: tx_sqlalchemy.py HOST PORT reads|writes|all TABLE orm-psycopg|orm-asyncpg|core-psycopg
"""
import asyncio

from sqlalchemy import Integer, Text, create_engine, select, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tx_workload import COMMITTED, KEY, ROLLED_BACK, Args, keys, run

ARGS = Args()


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = ARGS.table
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    v: Mapped[str] = mapped_column(Text)


VALUE = select(Item.v).where(Item.id == KEY)


def set_value(value):
    return update(Item).where(Item.id == KEY).values(v=value)


def orm_psycopg_reads():
    engine = create_engine(ARGS.url("postgresql+psycopg"))
    values = []
    for key in keys():
        with Session(engine) as session:
            values.append(session.get(Item, key).v)
            session.commit()
    engine.dispose()
    return {"reads": values}


def orm_psycopg_writes():
    engine = create_engine(ARGS.url("postgresql+psycopg"))

    def read_b():
        with Session(engine) as session:
            value = session.get(Item, KEY).v
            session.commit()
            return value

    out = {"b_before": [read_b() for _ in range(3)]}
    with Session(engine) as a:
        item = a.get(Item, KEY)
        out["a_before_write"] = item.v
        item.v = COMMITTED
        a.flush()
        out["updated"] = 1
        # A column read always asks the database (the identity map holds the object).
        out["a_own_write"] = a.scalar(VALUE)
        out["b_during"] = read_b()
        a.commit()
        out["a_after_commit"] = a.get(Item, KEY).v
        a.commit()
        out["b_after_commit"] = read_b()
        out["rolled_back_updated"] = a.execute(set_value(ROLLED_BACK)).rowcount
        out["a_own_rollback"] = a.scalar(VALUE)
        out["b_during_rollback"] = read_b()
        a.rollback()
        out["a_after_rollback"] = a.get(Item, KEY).v
        a.commit()
    out["b_after_rollback"] = read_b()
    fresh = create_engine(ARGS.url("postgresql+psycopg"))
    with Session(fresh) as c:
        out["c_after_rollback"] = c.get(Item, KEY).v
        c.commit()
    fresh.dispose()
    engine.dispose()
    return out


async def orm_asyncpg_reads():
    engine = create_async_engine(ARGS.url("postgresql+asyncpg"))
    values = []
    for key in keys():
        async with AsyncSession(engine) as session:
            values.append((await session.get(Item, key)).v)
            await session.commit()
    await engine.dispose()
    return {"reads": values}


async def orm_asyncpg_writes():
    engine = create_async_engine(ARGS.url("postgresql+asyncpg"))

    async def read_b():
        async with AsyncSession(engine) as session:
            value = (await session.get(Item, KEY)).v
            await session.commit()
            return value

    out = {"b_before": [await read_b() for _ in range(3)]}
    async with AsyncSession(engine) as a:
        item = await a.get(Item, KEY)
        out["a_before_write"] = item.v
        item.v = COMMITTED
        await a.flush()
        out["updated"] = 1
        out["a_own_write"] = await a.scalar(VALUE)
        out["b_during"] = await read_b()
        await a.commit()
        out["a_after_commit"] = (await a.get(Item, KEY)).v
        await a.commit()
        out["b_after_commit"] = await read_b()
        out["rolled_back_updated"] = (await a.execute(set_value(ROLLED_BACK))).rowcount
        out["a_own_rollback"] = await a.scalar(VALUE)
        out["b_during_rollback"] = await read_b()
        await a.rollback()
        out["a_after_rollback"] = (await a.get(Item, KEY)).v
        await a.commit()
    out["b_after_rollback"] = await read_b()
    fresh = create_async_engine(ARGS.url("postgresql+asyncpg"))
    async with AsyncSession(fresh) as c:
        out["c_after_rollback"] = (await c.get(Item, KEY)).v
        await c.commit()
    await fresh.dispose()
    await engine.dispose()
    return out


def value_of(conn, key):
    return conn.execute(select(Item.v).where(Item.id == key)).scalar_one()


def core_psycopg_reads():
    engine = create_engine(ARGS.url("postgresql+psycopg"))
    values = []
    for key in keys():
        with engine.connect() as conn:
            values.append(value_of(conn, key))
            conn.commit()
    engine.dispose()
    return {"reads": values}


def core_psycopg_writes():
    engine = create_engine(ARGS.url("postgresql+psycopg"))

    def read_b():
        with engine.connect() as conn:
            value = value_of(conn, KEY)
            conn.commit()
            return value

    out = {"b_before": [read_b() for _ in range(3)]}
    with engine.connect() as a:
        out["a_before_write"] = value_of(a, KEY)
        out["updated"] = a.execute(set_value(COMMITTED)).rowcount
        out["a_own_write"] = value_of(a, KEY)
        out["b_during"] = read_b()
        a.commit()
        out["a_after_commit"] = value_of(a, KEY)
        a.commit()
        out["b_after_commit"] = read_b()
        out["rolled_back_updated"] = a.execute(set_value(ROLLED_BACK)).rowcount
        out["a_own_rollback"] = value_of(a, KEY)
        out["b_during_rollback"] = read_b()
        a.rollback()
        out["a_after_rollback"] = value_of(a, KEY)
        a.commit()
    out["b_after_rollback"] = read_b()
    fresh = create_engine(ARGS.url("postgresql+psycopg"))
    with fresh.connect() as c:
        out["c_after_rollback"] = value_of(c, KEY)
        c.commit()
    fresh.dispose()
    engine.dispose()
    return out


if ARGS.mode == "orm-psycopg":
    run(ARGS.phase, orm_psycopg_reads, orm_psycopg_writes)
elif ARGS.mode == "orm-asyncpg":
    run(ARGS.phase, lambda: asyncio.run(orm_asyncpg_reads()),
        lambda: asyncio.run(orm_asyncpg_writes()))
elif ARGS.mode == "core-psycopg":
    run(ARGS.phase, core_psycopg_reads, core_psycopg_writes)
else:
    raise SystemExit("MODE is orm-psycopg, orm-asyncpg or core-psycopg")
