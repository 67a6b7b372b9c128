"""The traced Python side of trace_interop.rs: fleet.py's app and tasks with OpenTelemetry's
Celery instrumentation and an exporter that prints each finished span as one stderr line
`OTEL_SPAN {"name", "kind", "trace_id", "span_id", "parent_id"}` (ids in lowercase hex).

As a worker: `celery -A otel_fleet worker -P solo ...` (solo: the instrumentation set up here, at
import, is in the process that runs the tasks).
As a client: `python otel_fleet.py send ORDER_ID` sends process_order inside a client span and
prints `{"trace_id", "task_id", "result"}` as its last stdout line once the task has run.
"""
import json
import sys

from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from fleet import app, process_order  # noqa: F401  (app: what `celery -A otel_fleet` loads)


class PrintExporter(SpanExporter):
    def export(self, spans):
        for span in spans:
            parent = span.parent
            print("OTEL_SPAN " + json.dumps({
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_id": format(parent.span_id, "016x") if parent else None,
            }), file=sys.stderr, flush=True)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(PrintExporter()))
trace.set_tracer_provider(provider)
CeleryInstrumentor().instrument()


def send(order_id):
    kwargs = {
        "order_id": order_id,
        "customer": {"id": "c-otel", "email": "otel@example.com"},
        "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 250}],
    }
    with trace.get_tracer("otel_fleet").start_as_current_span("py-client") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        result = process_order.apply_async(kwargs=kwargs)
    print(json.dumps({"trace_id": trace_id, "task_id": result.id, "result": result.get(timeout=30)}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["send"] and len(sys.argv) == 3:
        send(sys.argv[2])
    else:
        sys.exit("usage: python otel_fleet.py send ORDER_ID")
