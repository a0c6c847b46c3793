#!/usr/bin/env python3
"""A client that knows nothing of convmsg but its address: server reflection, v1alpha.

Python's official grpcio-reflection client (grpc_reflection.v1alpha,
ProtoReflectionDescriptorDatabase) asks the server for its services and their
descriptors; every message sent is built from those discovered descriptors only (no
generated stubs, no .proto file): it provisions a channel, a messaging component and an
end user through MessagingAdmin, sends a notification through ConversationMessages and
follows WatchRequestStatus until the request is Completed.

    python3 tests/python/reflection_test.py --server 127.0.0.1:50051 --token TOKEN

The server and token may also come from CONVMSG_SERVER and CONVMSG_TOKEN; the token
needs the admin, send and read scopes. The last line printed is
`python reflection: N passed, M failed`; the exit code is 0 only when every check passed.
"""

import argparse
import os
import secrets
import sys
import traceback

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

CALL_TIMEOUT = 10.0  # seconds, for every unary RPC
WATCH_TIMEOUT = 60.0  # seconds, for following a request to Completed
CONVERSATION = "convmsg.v1.ConversationMessages"
ADMIN = "convmsg.v1.MessagingAdmin"


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call, reflection's stream included."""

    def __init__(self, token):
        self._header = ("authorization", "Bearer " + token)

    def _details(self, details):
        metadata = list(details.metadata or ()) + [self._header]
        return details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(details, metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


class _Details(grpc.ClientCallDetails):
    def __init__(self, details, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class Discovered:
    """The server's services as reflection describes them, and calls built from that."""

    def __init__(self, channel):
        self.channel = channel
        self.database = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.database)

    def method(self, service, name):
        return self.pool.FindServiceByName(service).methods_by_name[name]

    def message(self, descriptor, fields):
        """A message of `descriptor`'s type, filled from a dict in proto3 JSON form."""
        return json_format.ParseDict(fields, message_factory.GetMessageClass(descriptor)())

    def _callable(self, service, name, kind):
        method = self.method(service, name)
        out = message_factory.GetMessageClass(method.output_type)
        call = getattr(self.channel, kind)(
            f"/{service}/{name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=out.FromString,
        )
        return method, call

    def unary(self, service, name, fields):
        method, call = self._callable(service, name, "unary_unary")
        reply = call(self.message(method.input_type, fields), timeout=CALL_TIMEOUT)
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)

    def stream(self, service, name, fields):
        method, call = self._callable(service, name, "unary_stream")
        for reply in call(self.message(method.input_type, fields), timeout=WATCH_TIMEOUT):
            yield json_format.MessageToDict(reply, preserving_proto_field_name=True)


# ---- checks: each takes the discovered server and a shared context, raises on failure ----


def check_reflection_needs_a_token(server, ctx):
    """Reflection v1alpha without a token is UNAUTHENTICATED."""
    anonymous = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(ctx["address"]))
    try:
        list(anonymous.get_services())
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, f"status {err.code()}: {err.details()}"
    else:
        raise AssertionError("reflection answered without a token")


def check_lists_the_services(server, ctx):
    """ListServices through v1alpha names both convmsg services."""
    services = set(server.database.get_services())
    for name in (CONVERSATION, ADMIN):
        assert name in services, f"{name} not among {sorted(services)}"


def check_describes_the_send_method(server, ctx):
    """The discovered SendConversationMessages takes and returns the documented messages."""
    method = server.method(CONVERSATION, "SendConversationMessages")
    assert method.input_type.full_name == "convmsg.v1.SendConversationMessagesRequest", method.input_type.full_name
    fields = set(method.input_type.fields_by_name)
    for field in ("message_definition_name", "messaging_definition_input_parameters", "messaging_end_user_ids"):
        assert field in fields, f"{field} not among {sorted(fields)}"
    watch = server.method(CONVERSATION, "WatchRequestStatus")
    assert watch.server_streaming and not watch.client_streaming, "WatchRequestStatus is a server stream"


def check_provisions_through_discovered_messages(server, ctx):
    """UpsertChannel, UpsertMessageDefinition and UpsertMessagingEndUsers, built from descriptors."""
    suffix = secrets.token_hex(4)
    channel = server.unary(ADMIN, "UpsertChannel", {
        "channel": {
            "developer_name": f"refl_{suffix}",
            "message_type": "MESSAGE_TYPE_TEXT",
            "provider": "log",
            "is_active": True,
        }
    })["channel"]
    assert channel["id"].startswith("0Mj"), f"channel id {channel['id']!r}"
    definition = server.unary(ADMIN, "UpsertMessageDefinition", {
        "message_definition": {
            "api_name": f"Refl_{suffix}",
            "type": "DEFINITION_TYPE_NOTIFICATION",
            "is_active": True,
            "text_layout": "Hi {!CustomerName}, see you on {!Day}",
            "parameters": [
                {"name": "CustomerName", "value_type": "PARAMETER_VALUE_TYPE_TEXT", "is_required": True},
                {"name": "Day", "value_type": "PARAMETER_VALUE_TYPE_DATE_TIME"},
            ],
        }
    })["message_definition"]
    users = server.unary(ADMIN, "UpsertMessagingEndUsers", {
        "messaging_end_users": [{
            "messaging_channel_id": channel["id"],
            "messaging_platform_key": f"+1555{int(suffix, 16) % 10**7:07d}",
            "messaging_consent_status": "CONSENT_STATUS_EXPLICITLY_OPTED_IN",
        }]
    })["messaging_end_users"]
    assert len(users) == 1 and users[0]["id"].startswith("0PA"), f"end users {users}"
    ctx["api_name"] = definition["api_name"]
    ctx["end_user_id"] = users[0]["id"]


def check_sends_and_follows_the_request_to_completed(server, ctx):
    """SendConversationMessages, then WatchRequestStatus until COMPLETED with one success."""
    assert "end_user_id" in ctx, "needs the provisioning check, which failed"
    reply = server.unary(CONVERSATION, "SendConversationMessages", {
        "message_definition_name": ctx["api_name"],
        "messaging_definition_input_parameters": [
            {"name": "CustomerName", "text_value": "Ada"},
            # A google.protobuf.Timestamp: its descriptor came over reflection too.
            {"name": "Day", "date_time_value": "2026-12-01T09:30:00Z"},
        ],
        "is_enforce_messaging_channel_consent": True,
        "messaging_end_user_ids": [ctx["end_user_id"]],
    })
    request_id = reply["request_id"]
    assert request_id.startswith("1sr") and len(reply["message_identifiers"]) == 1, f"reply {reply}"
    statuses = [u["request"]["request_status"]
                for u in server.stream(CONVERSATION, "WatchRequestStatus", {"request_id": request_id})]
    assert statuses and statuses[-1] == "REQUEST_STATUS_COMPLETED", f"statuses {statuses}"
    record = server.unary(CONVERSATION, "GetRequestStatus", {"request_id": request_id})["request"]
    assert record.get("success_message_count") == 1, f"record {record}"


CHECKS = [
    check_reflection_needs_a_token,
    check_lists_the_services,
    check_describes_the_send_method,
    check_provisions_through_discovered_messages,
    check_sends_and_follows_the_request_to_completed,
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=os.environ.get("CONVMSG_SERVER"), help="HOST:PORT (env CONVMSG_SERVER)")
    parser.add_argument("--token", default=os.environ.get("CONVMSG_TOKEN"), help="bearer token (env CONVMSG_TOKEN)")
    args = parser.parse_args()
    if not args.server or not args.token:
        parser.error("--server and --token (or CONVMSG_SERVER and CONVMSG_TOKEN) are required")

    plain = grpc.insecure_channel(args.server)
    grpc.channel_ready_future(plain).result(timeout=30)
    server = Discovered(grpc.intercept_channel(plain, _Bearer(args.token)))
    ctx = {"address": args.server}
    passed = failed = 0
    for check in CHECKS:
        try:
            check(server, ctx)
        except Exception as exc:  # noqa: BLE001 - report every kind of failure
            failed += 1
            print(f"FAIL {check.__name__}: {check.__doc__.strip()}")
            if isinstance(exc, AssertionError):
                print(f"     {exc}")
            else:
                traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {check.__name__}")
    plain.close()
    print(f"python reflection: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
