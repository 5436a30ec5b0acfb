"""What the worker reads on every tick must not grow with the orders already done: a soak of
13,800 Lightning orders found the on-chain watch's guard scanning them all (6 ms a tick). No
nodes: the statements' plans, on the database the suite runs on."""

from __future__ import annotations

from reference_app.services.modes import onchain_multisig


def _plan(api, statement) -> str:
    """SQLite's query plan, or PostgreSQL's, as one text."""
    with api.app.state.ctx.db.session() as session:  # a reader may send no EXPLAIN
        connection = session.connection()
        sql = str(statement.compile(connection, compile_kwargs={"literal_binds": True}))
        explain = "EXPLAIN QUERY PLAN " if connection.dialect.name == "sqlite" else "EXPLAIN "
        return "\n".join(str(row) for row in connection.exec_driver_sql(explain + sql))


def test_the_on_chain_guard_does_not_read_the_orders_table(api):
    plan = _plan(api, onchain_multisig._ANY_ORDER)
    assert "orders" not in plan.replace("onchain_escrows", ""), plan  # before: SCAN orders
