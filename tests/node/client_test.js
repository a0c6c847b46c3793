#!/usr/bin/env node
// A convmsg client in Node.js: @grpc/grpc-js with @grpc/proto-loader reading the
// repository's proto/ at run time (no generated code). It provisions a channel, a
// messaging component and two end users through MessagingAdmin, sends a notification
// with typed parameters through ConversationMessages, follows WatchRequestStatus until
// the request is Completed, and checks a refusal's rich error details and a call
// without a token.
//
//   node tests/node/client_test.js --server 127.0.0.1:50051 --token TOKEN
//
// The server and token may also come from CONVMSG_SERVER and CONVMSG_TOKEN; the token
// needs the admin, send and read scopes. The last line printed is
// `node client: N passed, M failed`; the exit code is 0 only when every check passed.
// The packages come from package-lock.json (`npm ci`, which scripts/test runs).
"use strict";

const path = require("node:path");
const crypto = require("node:crypto");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTO_DIR = path.resolve(__dirname, "../../proto");
const CALL_TIMEOUT_MS = 10_000;
const WATCH_TIMEOUT_MS = 60_000;

function parseArgs(argv) {
  const args = { server: process.env.CONVMSG_SERVER, token: process.env.CONVMSG_TOKEN };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--server") args.server = value;
    else if (flag === "--token") args.token = value;
    else throw new Error(`unknown argument ${flag}; use --server HOST:PORT --token TOKEN`);
  }
  if (!args.server || !args.token) throw new Error("--server and --token (or CONVMSG_SERVER, CONVMSG_TOKEN) are required");
  return args;
}

function loadServices() {
  const definition = protoLoader.loadSync(
    ["convmsg/v1/conversation_messages.proto", "convmsg/v1/messaging_admin.proto"],
    { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(definition).convmsg.v1;
}

// google.rpc.Status and the two details convmsg sends, for reading
// `grpc-status-details-bin` (field numbers from googleapis' google/rpc/*.proto).
const rpcTypes = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } } } },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: "int32", id: 1 },
                message: { type: "string", id: 2 },
                details: { rule: "repeated", type: "google.protobuf.Any", id: 3 },
              },
            },
            BadRequest: {
              fields: { field_violations: { rule: "repeated", type: "FieldViolation", id: 1 } },
              nested: {
                FieldViolation: { fields: { field: { type: "string", id: 1 }, description: { type: "string", id: 2 } } },
              },
            },
            ErrorInfo: { fields: { reason: { type: "string", id: 1 }, domain: { type: "string", id: 2 } } },
          },
        },
      },
    },
  },
});

function richDetails(err) {
  const raw = err.metadata && err.metadata.get("grpc-status-details-bin")[0];
  if (!raw) throw new Error(`no grpc-status-details-bin on ${err.code}: ${err.details}`);
  const status = rpcTypes.lookupType("google.rpc.Status").decode(raw);
  const out = { violations: [], reason: null };
  for (const any of status.details) {
    const type = any.type_url.split("/").pop();
    if (type === "google.rpc.BadRequest") {
      out.violations.push(...rpcTypes.lookupType(type).decode(any.value).field_violations.map((v) => v.field));
    } else if (type === "google.rpc.ErrorInfo") {
      out.reason = rpcTypes.lookupType(type).decode(any.value).reason;
    }
  }
  return out;
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

class Client {
  constructor(server, token) {
    const v1 = loadServices();
    const credentials = grpc.credentials.createInsecure();
    this.admin = new v1.MessagingAdmin(server, credentials);
    this.messages = new v1.ConversationMessages(server, credentials);
    this.metadata = new grpc.Metadata();
    this.metadata.set("authorization", `Bearer ${token}`);
  }

  call(stub, method, request, metadata = this.metadata) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + CALL_TIMEOUT_MS);
      stub[method](request, metadata, { deadline }, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  }

  watch(requestId) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + WATCH_TIMEOUT_MS);
      const updates = [];
      const stream = this.messages.WatchRequestStatus({ request_id: requestId }, this.metadata, { deadline });
      stream.on("data", (update) => updates.push(update.request));
      stream.on("error", reject);
      stream.on("end", () => resolve(updates));
    });
  }

  close() {
    this.admin.close();
    this.messages.close();
  }
}

function sendRequest(ctx, { withCustomerName = true } = {}) {
  const params = [
    { name: "Amount", number_value: 12.5 },
    { name: "DueDate", date_value: "2026-12-01" },
    { name: "RemindAt", date_time_value: { seconds: "1796117400", nanos: 0 } },
  ];
  if (withCustomerName) params.unshift({ name: "CustomerName", text_value: "Ada" });
  return {
    message_definition_name: ctx.apiName,
    messaging_definition_input_parameters: params,
    is_enforce_messaging_channel_consent: true,
    messaging_end_user_ids: ctx.endUserIds,
  };
}

const checks = [
  async function provisions_a_channel_a_component_and_two_end_users(client, ctx) {
    const suffix = crypto.randomBytes(4).toString("hex");
    const { channel } = await client.call(client.admin, "UpsertChannel", {
      channel: { developer_name: `node_sms_${suffix}`, message_type: "MESSAGE_TYPE_TEXT", provider: "log", is_active: true },
    });
    assert(channel.id.startsWith("0Mj") && channel.id.length === 18, `channel id ${channel.id}`);
    const { message_definition: definition } = await client.call(client.admin, "UpsertMessageDefinition", {
      message_definition: {
        api_name: `node_notice_${suffix}`,
        type: "DEFINITION_TYPE_NOTIFICATION",
        is_active: true,
        text_layout: "Hi {!CustomerName}, {!Amount} is due on {!DueDate} (reminder {!RemindAt})",
        parameters: [
          { name: "CustomerName", value_type: "PARAMETER_VALUE_TYPE_TEXT", is_required: true },
          { name: "Amount", value_type: "PARAMETER_VALUE_TYPE_DOUBLE" },
          { name: "DueDate", value_type: "PARAMETER_VALUE_TYPE_DATE" },
          { name: "RemindAt", value_type: "PARAMETER_VALUE_TYPE_DATE_TIME" },
        ],
      },
    });
    const first = 1000 + crypto.randomInt(8998);
    const { messaging_end_users: users } = await client.call(client.admin, "UpsertMessagingEndUsers", {
      messaging_end_users: [first, first + 1].map((n) => ({
        messaging_channel_id: channel.id,
        messaging_platform_key: `+1555100${n}`,
        messaging_consent_status: "CONSENT_STATUS_EXPLICITLY_OPTED_IN",
      })),
    });
    assert(users.length === 2 && users.every((u) => u.id.startsWith("0PA")), `end users ${JSON.stringify(users)}`);
    ctx.apiName = definition.api_name;
    ctx.endUserIds = users.map((u) => u.id);
  },

  async function sends_and_follows_watch_request_status_to_completed(client, ctx) {
    assert(ctx.endUserIds, "needs the provisioning check, which failed");
    const reply = await client.call(client.messages, "SendConversationMessages", sendRequest(ctx));
    assert(reply.request_id.startsWith("1sr") && reply.request_id.length === 18, `request_id ${reply.request_id}`);
    assert(reply.message_identifiers.length === 2, `message_identifiers ${reply.message_identifiers}`);
    const updates = await client.watch(reply.request_id);
    const statuses = updates.map((r) => r.request_status);
    assert(statuses.length > 0 && statuses.at(-1) === "REQUEST_STATUS_COMPLETED", `statuses ${statuses}`);
    assert(statuses.indexOf("REQUEST_STATUS_COMPLETED") === statuses.length - 1, `the stream ends after Completed: ${statuses}`);
    const last = updates.at(-1);
    assert(last.success_message_count === 2, `success_message_count ${last.success_message_count}`);
    const ids = last.messages.map((m) => m.message_identifier);
    assert(JSON.stringify(ids) === JSON.stringify(reply.message_identifiers), `identifiers ${ids}`);
  },

  async function a_missing_required_parameter_is_invalid_argument_naming_it(client, ctx) {
    assert(ctx.endUserIds, "needs the provisioning check, which failed");
    try {
      await client.call(client.messages, "SendConversationMessages", sendRequest(ctx, { withCustomerName: false }));
    } catch (err) {
      assert(err.code === grpc.status.INVALID_ARGUMENT, `status ${err.code}: ${err.details}`);
      const details = richDetails(err);
      assert(details.reason === "REQUIRED_FIELD_MISSING", `ErrorInfo.reason ${details.reason}`);
      assert(details.violations.some((f) => f.includes("CustomerName")), `violations ${details.violations}`);
      return;
    }
    throw new Error("a send without CustomerName succeeded");
  },

  async function a_call_without_a_token_is_unauthenticated(client) {
    try {
      await client.call(client.messages, "GetRequestStatus", { request_id: "1sr000000000001AAA" }, new grpc.Metadata());
    } catch (err) {
      assert(err.code === grpc.status.UNAUTHENTICATED, `status ${err.code}: ${err.details}`);
      return;
    }
    throw new Error("the call without a token succeeded");
  },
];

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const client = new Client(args.server, args.token);
  const ctx = {};
  let passed = 0;
  let failed = 0;
  for (const check of checks) {
    try {
      await check(client, ctx);
      passed += 1;
      console.log(`ok   ${check.name}`);
    } catch (err) {
      failed += 1;
      console.log(`FAIL ${check.name}: ${err.stack || err}`);
    }
  }
  client.close();
  console.log(`node client: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`node client: could not run: ${err.stack || err}`);
    process.exit(1);
  },
);
