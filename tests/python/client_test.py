#!/usr/bin/env python3
"""A convmsg client written in another language: Python stubs generated from proto/.

Generates the Python stubs from the repository's proto/ at run time (grpc_tools.protoc,
into a fresh temporary directory), provisions a channel, a messaging component and two
end users through MessagingAdmin, sends a notification through ConversationMessages
and reads its status back, then checks two error cases.

    python3 tests/python/client_test.py --server 127.0.0.1:50051 --token TOKEN
    python3 tests/python/client_test.py --generate-only

The server and token may also come from CONVMSG_SERVER and CONVMSG_TOKEN. The token
needs the admin, send and read scopes. The last line printed is
`python client: N passed, M failed`; the exit code is 0 only when every check passed.
"""

import argparse
import atexit
import importlib
import importlib.resources
import os
import random
import re
import secrets
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_FILES = [
    "convmsg/v1/conversation_messages.proto",
    "convmsg/v1/messaging_admin.proto",
]
CALL_TIMEOUT = 10.0  # seconds, for every RPC
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REQUEST_NAME_RE = re.compile(r"^MSJ-\d{8}$")

# Filled in by load_stubs().
pb = pb_grpc = admin_pb = admin_pb_grpc = None


def well_known_protos_dir():
    """grpc_tools' bundled include dir (google/protobuf/timestamp.proto and friends)."""
    try:
        path = importlib.resources.files("grpc_tools") / "_proto"
        return str(path)
    except (AttributeError, TypeError, ModuleNotFoundError):
        import pkg_resources  # older setuptools-based fallback

        return pkg_resources.resource_filename("grpc_tools", "_proto")


def load_stubs(proto_dir):
    """Generate the stubs into a fresh temporary directory and import them."""
    global pb, pb_grpc, admin_pb, admin_pb_grpc
    from grpc_tools import protoc

    out_dir = tempfile.mkdtemp(prefix="convmsg_pystubs_")
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={proto_dir}",
        f"--proto_path={well_known_protos_dir()}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTO_FILES,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with exit code {rc}: {args}")
    # Regular packages, so that no other `convmsg` on sys.path can shadow them.
    for pkg in ("convmsg", "convmsg/v1"):
        Path(out_dir, pkg, "__init__.py").touch()
    sys.path.insert(0, out_dir)
    pb = importlib.import_module("convmsg.v1.conversation_messages_pb2")
    pb_grpc = importlib.import_module("convmsg.v1.conversation_messages_pb2_grpc")
    admin_pb = importlib.import_module("convmsg.v1.messaging_admin_pb2")
    admin_pb_grpc = importlib.import_module("convmsg.v1.messaging_admin_pb2_grpc")
    return out_dir


class Client:
    def __init__(self, server, token):
        import grpc

        self.channel = grpc.insecure_channel(server)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.metadata = (("authorization", "Bearer " + token),)
        self.admin = admin_pb_grpc.MessagingAdminStub(self.channel)
        self.messages = pb_grpc.ConversationMessagesStub(self.channel)

    def close(self):
        self.channel.close()


def send_request(api_name, end_user_ids, include_customer_name=True):
    params = []
    if include_customer_name:
        params.append(pb.MessageDefinitionInputParameter(name="CustomerName", text_value="Ada"))
    params.append(pb.MessageDefinitionInputParameter(name="Amount", number_value=12.5))
    params.append(pb.MessageDefinitionInputParameter(name="DueDate", date_value="2026-12-01"))
    return pb.SendConversationMessagesRequest(
        message_definition_name=api_name,
        messaging_definition_input_parameters=params,
        is_enforce_messaging_channel_consent=False,
        messaging_end_user_ids=end_user_ids,
    )


def need(ctx, *keys):
    missing = [k for k in keys if k not in ctx]
    if missing:
        raise AssertionError(f"needs {', '.join(missing)} from an earlier check, which failed")


# ---- checks: each takes the shared context and raises on failure ----------------------


def check_provision(client, ctx):
    """UpsertChannel, UpsertMessageDefinition and UpsertMessagingEndUsers."""
    suffix = secrets.token_hex(4)
    channel = admin_pb.Channel(
        developer_name=f"py_sms_{suffix}",
        master_label=f"Python SMS {suffix}",
        message_type=admin_pb.MESSAGE_TYPE_TEXT,
        provider="log",
        is_active=True,
    )
    resp = client.admin.UpsertChannel(
        admin_pb.UpsertChannelRequest(channel=channel),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    channel_id = resp.channel.id
    assert channel_id.startswith("0Mj") and len(channel_id) == 18, f"channel id {channel_id!r}"

    P = admin_pb
    definition = P.MessageDefinition(
        api_name=f"py_notice_{suffix}",
        master_label=f"Python notice {suffix}",
        type=P.DEFINITION_TYPE_NOTIFICATION,
        is_active=True,
        parameters=[
            P.MessageParameter(name="CustomerName", value_type=P.PARAMETER_VALUE_TYPE_TEXT, is_required=True),
            P.MessageParameter(name="Amount", value_type=P.PARAMETER_VALUE_TYPE_DOUBLE, is_required=True),
            P.MessageParameter(name="DueDate", value_type=P.PARAMETER_VALUE_TYPE_DATE, is_required=False),
        ],
        text_layout="Hi {!CustomerName}, {!Amount} due {!DueDate}",
    )
    resp = client.admin.UpsertMessageDefinition(
        P.UpsertMessageDefinitionRequest(message_definition=definition),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert resp.message_definition.api_name == definition.api_name, (
        f"api_name {resp.message_definition.api_name!r} != {definition.api_name!r}"
    )

    first = random.randint(1000, 9998)
    keys = [f"+1555000{first}", f"+1555000{first + 1}"]
    resp = client.admin.UpsertMessagingEndUsers(
        P.UpsertMessagingEndUsersRequest(
            messaging_end_users=[
                P.MessagingEndUser(messaging_channel_id=channel_id, messaging_platform_key=k, name=f"Py user {k}")
                for k in keys
            ]
        ),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    users = list(resp.messaging_end_users)
    assert len(users) == 2, f"expected 2 end users back, got {len(users)}"
    assert [u.messaging_platform_key for u in users] == keys, "end users not in request order"
    for u in users:
        assert u.id.startswith("0PA") and len(u.id) == 18, f"end user id {u.id!r}"

    ctx["api_name"] = definition.api_name
    ctx["end_user_ids"] = [u.id for u in users]


def check_send(client, ctx):
    """SendConversationMessages answers with a 1sr id and one lowercase UUID per user."""
    need(ctx, "api_name", "end_user_ids")
    resp = client.messages.SendConversationMessages(
        send_request(ctx["api_name"], ctx["end_user_ids"]),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    rid = resp.request_id
    assert len(rid) == 18 and rid.startswith("1sr"), f"request_id {rid!r}"
    ids = list(resp.message_identifiers)
    assert len(ids) == 2, f"expected 2 message_identifiers, got {ids}"
    for mid in ids:
        assert UUID_RE.match(mid), f"message identifier {mid!r} is not a lowercase UUID"
    ctx["request_id"] = rid
    ctx["message_identifiers"] = ids


def check_request_status(client, ctx):
    """GetRequestStatus returns the request record with one entry per recipient."""
    need(ctx, "request_id", "message_identifiers", "end_user_ids", "api_name")
    resp = client.messages.GetRequestStatus(
        pb.GetRequestStatusRequest(request_id=ctx["request_id"]),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    req = resp.request
    assert req.id == ctx["request_id"], f"id {req.id!r} != {ctx['request_id']!r}"
    assert REQUEST_NAME_RE.match(req.name), f"name {req.name!r} does not match MSJ-########"
    assert req.message_definition == ctx["api_name"], f"message_definition {req.message_definition!r}"
    assert req.total_message_count == 2, f"total_message_count {req.total_message_count}"
    assert len(req.messages) == 2, f"expected 2 messages, got {len(req.messages)}"
    got_ids = [m.message_identifier for m in req.messages]
    assert got_ids == ctx["message_identifiers"], f"message identifiers {got_ids} != {ctx['message_identifiers']}"
    got_users = [m.messaging_end_user_id for m in req.messages]
    assert got_users == ctx["end_user_ids"], f"end user ids {got_users} != {ctx['end_user_ids']}"
    allowed = {pb.REQUEST_STATUS_PENDING, pb.REQUEST_STATUS_IN_PROGRESS, pb.REQUEST_STATUS_COMPLETED}
    assert req.request_status in allowed, f"request_status {pb.RequestStatus.Name(req.request_status)}"


def check_request_status_by_15_char_id(client, ctx):
    """GetRequestStatus accepts the 15-character form of the id."""
    need(ctx, "request_id")
    short = ctx["request_id"][:15]
    resp = client.messages.GetRequestStatus(
        pb.GetRequestStatusRequest(request_id=short),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert resp.request.id == ctx["request_id"], f"id {resp.request.id!r} != {ctx['request_id']!r}"


def check_missing_parameter(client, ctx):
    """A missing required parameter is INVALID_ARGUMENT with a BadRequest naming it."""
    import grpc
    from google.rpc import error_details_pb2, status_pb2

    need(ctx, "api_name", "end_user_ids")
    try:
        client.messages.SendConversationMessages(
            send_request(ctx["api_name"], ctx["end_user_ids"], include_customer_name=False),
            metadata=client.metadata,
            timeout=CALL_TIMEOUT,
        )
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"status {err.code()}: {err.details()}"
        raw = [v for k, v in (err.trailing_metadata() or ()) if k == "grpc-status-details-bin"]
        assert raw, "no grpc-status-details-bin in the trailing metadata"
        status = status_pb2.Status.FromString(raw[0])
        violations = []
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(bad.field_violations)
        fields = [v.field for v in violations]
        assert any("CustomerName" in f for f in fields), (
            f"no BadRequest field violation names CustomerName; violations: {fields}; status: {status}"
        )
    else:
        raise AssertionError("send without CustomerName succeeded")


def check_unauthenticated(client, ctx):
    """A call without a token, or with a bad one, is UNAUTHENTICATED."""
    import grpc

    req = pb.GetRequestStatusRequest(request_id=ctx.get("request_id", "1sr000000000001AAA"))
    for label, metadata in (("no token", None), ("bad token", (("authorization", "Bearer not-a-token"),))):
        try:
            client.messages.GetRequestStatus(req, metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, f"{label}: status {err.code()}: {err.details()}"
        else:
            raise AssertionError(f"{label}: the call succeeded")


CHECKS = [
    check_provision,
    check_send,
    check_request_status,
    check_request_status_by_15_char_id,
    check_missing_parameter,
    check_unauthenticated,
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=os.environ.get("CONVMSG_SERVER"), help="HOST:PORT (env CONVMSG_SERVER)")
    parser.add_argument("--token", default=os.environ.get("CONVMSG_TOKEN"), help="bearer token (env CONVMSG_TOKEN)")
    parser.add_argument("--proto-dir", default=str(REPO_ROOT / "proto"), help="default: the repository's proto/")
    parser.add_argument("--generate-only", action="store_true", help="only generate and import the stubs")
    args = parser.parse_args()

    try:
        out_dir = load_stubs(args.proto_dir)
    except Exception:
        traceback.print_exc()
        print("python client: stub generation failed")
        return 1
    if args.generate_only:
        services = [s.name for m in (pb, admin_pb) for s in m.DESCRIPTOR.services_by_name.values()]
        print(f"generated and imported stubs in {out_dir}: services {', '.join(services)}")
        return 0
    if not args.server or not args.token:
        parser.error("--server and --token (or CONVMSG_SERVER and CONVMSG_TOKEN) are required")

    try:
        client = Client(args.server, args.token)
    except Exception as exc:  # noqa: BLE001
        print(f"cannot reach the server at {args.server}: {exc!r}")
        print(f"python client: 0 passed, {len(CHECKS)} failed", flush=True)
        return 1
    ctx = {}
    passed = failed = 0
    try:
        for check in CHECKS:
            try:
                check(client, ctx)
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
    finally:
        client.close()
    print(f"python client: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
