"""``lnd_grpc.to_dict`` prints every message of lnd's stubs as protobuf's ``MessageToDict``
does (field names kept, fields without presence included): empty, filled in every field, and
with the values that print specially. No nodes: the messages are built here."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict

from regtest_cluster.nodes.lnd_grpc import to_dict
from regtest_cluster.nodes.lnrpc import invoices_pb2, lightning_pb2, router_pb2

MESSAGES = sorted({cls for module in (lightning_pb2, invoices_pb2, router_pb2)
                   for cls in vars(module).values()
                   if isinstance(cls, type) and hasattr(cls, "DESCRIPTOR") and hasattr(cls, "ListFields")},
                  key=lambda cls: cls.DESCRIPTOR.full_name)


def reference(message) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _value(field, n: int, special: bool):
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return True
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return bytes([n % 256, 0xff, 0x00]) * 11 if field.type == FieldDescriptor.TYPE_BYTES else f"text {n} é"
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return max(numbers) + 7 if special else numbers[-1]  # an open enum keeps a number it does not name
    if cpp in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return [float("inf"), float("-inf"), float("nan")][n % 3] if special else 0.1 + n
    if cpp in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_INT32):
        return -(n + 1) if special else 2 ** 31 - n - 1 if cpp == FieldDescriptor.CPPTYPE_INT32 else 2 ** 62 + n
    return n + 1 if not special else (2 ** 64 - 1 if cpp == FieldDescriptor.CPPTYPE_UINT64 else 2 ** 32 - 1)


def fill(message, depth: int = 0, special: bool = False):
    """Every field set to a value that is not its default (nested messages to a depth of 3;
    of a oneof, the last member set wins)."""
    for n, field in enumerate(message.DESCRIPTOR.fields):
        target = getattr(message, field.name) if field.is_repeated or field.message_type else None
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
            for k in range(2):
                key = (True if k else False) if key_field.cpp_type == FieldDescriptor.CPPTYPE_BOOL else \
                    (f"key{k}" if key_field.cpp_type == FieldDescriptor.CPPTYPE_STRING else k + 3)
                if value_field.message_type is not None:
                    if depth < 3:
                        fill(target[key], depth + 1, special)
                else:
                    target[key] = _value(value_field, n + k, special)
        elif field.message_type is not None:
            if depth >= 3:
                continue
            if field.is_repeated:
                for _ in range(2):
                    fill(target.add(), depth + 1, special)
            else:
                fill(target, depth + 1, special)
                target.SetInParent()  # an empty nested message is still set
        elif field.is_repeated:
            target.extend([_value(field, n, special), _value(field, n + 1, special)])
        else:
            setattr(message, field.name, _value(field, n, special))
    return message


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.DESCRIPTOR.full_name)
def test_to_dict_prints_every_message_as_message_to_dict(cls):
    assert len(MESSAGES) > 200  # lnd's three services, not an empty import
    for message in (cls(), fill(cls()), fill(cls(), special=True)):
        assert to_dict(message) == reference(message)


def test_a_field_with_presence_is_left_out_until_set():
    invoice = lightning_pb2.Invoice(value=5)
    assert "amp_invoice_state" in to_dict(invoice) and to_dict(invoice)["amp_invoice_state"] == {}
    payment = router_pb2.SendPaymentRequest()
    assert to_dict(payment)["dest_custom_records"] == {} and to_dict(payment)["amt"] == "0"
    update = lightning_pb2.HTLCAttempt()
    assert "route" not in to_dict(update)
    update.route.total_amt = 3
    assert to_dict(update)["route"]["total_amt"] == "3"
