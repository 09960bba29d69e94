"""A Powertools batch handler: records whose body is "fail" fail, the others succeed."""
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record):
    print(f"record {record.message_id} body={record.body}", flush=True)
    if record.body == "fail":
        raise ValueError(f"record {record.message_id} failed")


def handler(event, context):
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
