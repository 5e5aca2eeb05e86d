"""An agent host's side of `sshsign mcp`, written with the official MCP Python SDK (`mcp` on PyPI).

tests/it/mcp.rs runs it with the appliance, the users and their keys set up, and reads the JSON
line it prints last. Each step asserts what the SDK received; a failed assertion exits non-zero
with its message. What needs the appliance's own view (the signatures, checked with ssh-keygen,
and the decision, checked with `sshsign verify-approval`) is returned for the Rust side.

Environment: SSHSIGN (the client binary), SSHSIGN_HOST/PORT/IDENTITY/KNOWN_HOSTS (the agent's
user, alice), BOB (bob's user id), BOB_SSH (a JSON argv that runs a command as bob over ssh),
FILE_KEY (alice's autonomous key in namespace "file"), COSIGN_KEY (bob's key, granted to alice
under cosign in namespace "deploy"), XDG_STATE_HOME (where the audit checkpoints are kept).
"""

import asyncio
import base64
import json
import os
import subprocess
import sys

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

TOOLS = {"sign", "request_approval", "check_approval", "wait_for_approval", "verify_approval",
         "list_keys", "audit_proof"}


def server():
    env = {name: os.environ[name] for name in os.environ
           if name.startswith("SSHSIGN_") or name in ("HOME", "PATH", "XDG_STATE_HOME")}
    return StdioServerParameters(command=os.environ["SSHSIGN"], args=["mcp"], env=env)


def as_bob(command):
    """Runs an appliance command as bob, over stock ssh."""
    argv = json.loads(os.environ["BOB_SSH"]) + [command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command}: {done.stdout} {done.stderr}"
    return json.loads(done.stdout)


def structured(result):
    assert result.structured_content is not None, result
    return result.structured_content


def ok(result):
    assert not result.is_error, result
    return structured(result)


def failed(result, code):
    assert result.is_error, result
    error = structured(result)["error"]
    assert error["code"] == code, error
    return error


class Host:
    """What the agent host's user sees: the pages shown by elicitation, progress, and notices
    that an elicitation is complete."""

    def __init__(self):
        self.elicitations = []
        self.completed = []
        self.progress = []

    async def elicit(self, context, params):
        self.elicitations.append(params.model_dump(by_alias=True, mode="json"))
        return types.ElicitResult(action="accept")

    async def message(self, message):
        if isinstance(message, types.ElicitCompleteNotification):
            self.completed.append(message.params.elicitation_id)

    async def on_progress(self, progress, total, message):
        self.progress.append({"progress": progress, "total": total, "message": message})


async def wait_until(predicate, what, seconds=20):
    with anyio.fail_after(seconds):
        while not predicate():
            await anyio.sleep(0.05)


async def main():
    bob = os.environ["BOB"]
    file_key = os.environ["FILE_KEY"]
    cosign_key = os.environ["COSIGN_KEY"]
    host = Host()
    out = {}
    async with Client(server(), elicitation_callback=host.elicit, message_handler=host.message,
                      read_timeout_seconds=90) as client:
        # The handshake: 2025-11-25, tools only.
        assert client.protocol_version == "2025-11-25", client.protocol_version
        assert client.server_info.name == "sshsign", client.server_info
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS, sorted(tools)
        for tool in tools.values():
            assert len(tool.description) > 60, tool
            assert tool.input_schema["type"] == "object", tool
            assert tool.input_schema.get("additionalProperties") is False, tool
        assert tools["request_approval"].input_schema["required"] == ["action"]

        keys = ok(await client.call_tool("list_keys", {}))
        held = {key["key_id"] for key in keys["keys"]}
        assert {file_key, cosign_key} <= held, keys

        # An autonomous key signs at once.
        signed = ok(await client.call_tool("sign", {
            "payload": "release notes v2\n", "namespace": "file", "key_id": file_key}))
        assert signed["status"] == "signed", signed
        assert signed["signature"].startswith("-----BEGIN SSH SIGNATURE-----"), signed
        assert "elicitation" not in signed, signed
        out["signed"] = signed

        # Its audit entry is in the log, proved here against the pinned checkpoint.
        proof = ok(await client.call_tool("audit_proof", {"index": signed["audit"]["index"]}))
        assert proof["verified"] is True, proof
        assert proof["entry"]["action"] == "sign", proof
        out["proof"] = proof

        # An approval: the page is shown by URL-mode elicitation, bob approves over SSH while
        # the wait reports progress, and the decision comes back signed.
        metadata = {"env": "prod", "commit": "4b825dc"}
        asked = ok(await client.call_tool("request_approval", {
            "action": "Deploy v2 to production", "metadata": metadata,
            "approvers": [bob], "methods": ["ssh"], "ttl": "15m"}))
        request = asked["id"]
        assert request.startswith("apr_") and asked["status"] == "pending", asked
        assert asked["elicitation"] == "accepted", asked
        shown = host.elicitations[-1]
        assert shown["mode"] == "url" and shown["elicitationId"] == request, shown
        assert shown["url"] == asked["approval_url"], (shown, asked)
        assert f"/approve/{request}?as={bob}" in shown["url"], shown
        assert bob in shown["message"], shown

        checked = ok(await client.call_tool("check_approval", {"id": request}))
        assert checked["status"] == "pending" and checked["decision"] is None, checked

        async def approve_once_waiting():
            await wait_until(lambda: host.progress, "a progress notification")
            as_bob(f"approve --id {request}")

        async with anyio.create_task_group() as group:
            group.start_soon(approve_once_waiting)
            waited = ok(await client.call_tool("wait_for_approval", {"id": request, "timeout_seconds": 60},
                                               progress_callback=host.on_progress))
        assert waited["status"] == "approved", waited
        assert waited["decision"]["signature"], waited
        assert waited.get("timed_out") is None, waited
        assert host.progress[0]["total"] == 60, host.progress
        await wait_until(lambda: request in host.completed, "elicitation complete")
        out["approval"] = waited
        out["approval_id"] = request

        verified = ok(await client.call_tool("verify_approval", {
            "decision": waited, "request_id": request, "approver": bob, "method": "ssh"}))
        assert verified["verified"] is True, verified
        verified = ok(await client.call_tool("verify_approval", {
            "decision": waited, "action": "Deploy v2 to production", "metadata": metadata}))
        assert verified["verified"] is True, verified
        # Bound to what was asked: another action, other metadata or another method fails.
        for wrong in ({"action": "Deploy v2 to staging", "metadata": metadata},
                      {"action": "Deploy v2 to production", "metadata": {"env": "dev"}},
                      {"request_id": request, "method": "passkey"}):
            failed(await client.call_tool("verify_approval", {"decision": waited, **wrong}),
                   "not_verified")
        tampered = json.loads(json.dumps(waited))
        signature = bytearray(base64.b64decode(tampered["decision"]["signature"]))
        signature[0] ^= 1
        tampered["decision"]["signature"] = base64.b64encode(bytes(signature)).decode()
        failed(await client.call_tool("verify_approval", {"decision": tampered, "request_id": request}),
               "not_verified")

        # A co-signed key: the sign waits for its principal, bob, whose page is shown; once he
        # approves, the wait returns the signature.
        pending = ok(await client.call_tool("sign", {
            "payload": "deploy manifest\n", "namespace": "deploy", "key_id": cosign_key}))
        assert pending["status"] == "pending_cosign", pending
        assert pending["elicitation"] == "accepted", pending
        assert host.elicitations[-1]["url"] == pending["approval_url"], host.elicitations
        assert host.elicitations[-1]["elicitationId"] == pending["pending_id"]
        as_bob(f"approve --id {pending['pending_id']}")
        cosigned = ok(await client.call_tool("wait_for_approval", {"id": pending["pending_id"]}))
        assert cosigned["status"] == "approved", cosigned
        assert cosigned["signature"].startswith("-----BEGIN SSH SIGNATURE-----"), cosigned
        out["cosigned"] = cosigned

        # No decision in time: the wait says so, promptly, and the request stays pending.
        slow = ok(await client.call_tool("request_approval", {
            "action": "Rotate the database password", "approvers": [bob], "methods": ["ssh"]}))
        started = asyncio.get_running_loop().time()
        late = ok(await client.call_tool("wait_for_approval", {"id": slow["id"], "timeout_seconds": 2}))
        assert late["status"] == "pending" and late["timed_out"] is True, late
        assert asyncio.get_running_loop().time() - started < 15, late

        # Bad input: clear errors, and the server goes on.
        failed(await client.call_tool("sign", {"payload": "x", "key_id": "ak_" + "a" * 26,
                                               "namespace": "file"}), "unknown_key")
        failed(await client.call_tool("sign", {"payload": "x", "payload_base64": "eA=="}),
               "invalid_argument")
        failed(await client.call_tool("sign", {"payload_base64": "not base64!"}), "invalid_argument")
        failed(await client.call_tool("check_approval", {"id": "apr_../../etc"}), "invalid_argument")
        failed(await client.call_tool("check_approval", {"id": "apr_" + "a" * 26}), "unknown_request")
        failed(await client.call_tool("request_approval", {"action": "x", "approvers": ["usr_nobody"]}),
               "invalid_argument")
        failed(await client.call_tool("wait_for_approval", {"id": slow["id"], "timeout_seconds": 86401}),
               "invalid_argument")
        # Arguments outside the schema: a tool error the model can read and correct (the
        # 2025-11-25 specification's input validation errors).
        wrong = await client.call_tool("sign", {"payload": "x", "colour": "blue"})
        assert wrong.is_error and "colour" in wrong.content[0].text, wrong
        try:
            await client.call_tool("no_such_tool", {})
            raise AssertionError("an unknown tool was called")
        except MCPError as error:
            out["unknown_tool_error"] = error.code
        # A wait the client gives up on is cancelled; the server answers the next call.
        try:
            await client.call_tool("wait_for_approval", {"id": slow["id"], "timeout_seconds": 60},
                                   read_timeout_seconds=1)
            raise AssertionError("the wait did not time out on the client")
        except (MCPError, TimeoutError):
            pass
        again = ok(await client.call_tool("check_approval", {"id": slow["id"]}))
        assert again["status"] == "pending", again

    # A host without elicitation: the page's address is in the result all the same.
    async with Client(server()) as plain:
        asked = ok(await plain.call_tool("request_approval", {"action": "Merge #42", "approvers": [bob]}))
        assert asked["elicitation"] == "unsupported", asked
        assert asked["approval_url"].startswith("http"), asked

    out["elicitations"] = len(host.elicitations)
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as failure:
        print(f"assertion failed: {failure}", file=sys.stderr)
        raise
