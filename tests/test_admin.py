"""Tests of the ``fic`` administrator commands, run with argv against a live FIC simulator."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from radius_bridge import admin, logs
from radius_bridge.simulator import FicSimulator
from radius_bridge.simulator_state import SimulatorSettings
from radius_bridge.simulator_users import SimUser, demo_users

SECRET = "admin-test-secret-91"


@pytest.fixture
def sim() -> Iterator[FicSimulator]:
    users = [
        *demo_users(),
        SimUser("quick", "quick@example.com", push="approve", push_delay=0.1),
        SimUser("nope", "nope@example.com", push="deny", push_delay=0.1),
    ]
    simulator = FicSimulator(users=users, settings=SimulatorSettings(client_secret=SECRET))
    simulator.start()
    yield simulator
    simulator.stop()


class Run:
    """One command's exit status and what it printed."""

    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err


Runner = Callable[..., Run]


@pytest.fixture
def run(sim: FicSimulator) -> Runner:
    """Run ``radius-bridge fic ARGS`` against the simulator, with the secret in the environment."""

    def run_command(
        *argv: str,
        environ: dict[str, str] | None = None,
        answers: tuple[str, ...] = (),
        connection: bool = True,
        ask_secret: Callable[[str], str] | None = None,
    ) -> Run:
        out, err = io.StringIO(), io.StringIO()
        pending = list(answers)
        streams = admin.Io(
            out=out,
            err=err,
            environ={"FIC_CLIENT_SECRET": SECRET} if environ is None else environ,
            interactive=bool(answers) or ask_secret is not None,
            ask=lambda prompt: pending.pop(0),
            ask_secret=ask_secret or (lambda prompt: pending.pop(0)),
        )
        options = ["--base-url", sim.base_url, "--client-id", "demo-client"] if connection else []
        status = admin.main(["fic", *argv, *options], io=streams)
        return Run(status, out.getvalue(), err.getvalue())

    return run_command


def test_users_list_prints_a_table(run: Runner) -> None:
    """`fic users list` prints a header and one row per user with name and e-mail."""
    result = run("users", "list")
    assert result.status == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split()[:3] == ["ID", "USERNAME", "EMAIL"]
    assert {line.split()[1] for line in lines[1:]} >= {"alice", "bob", "carol", "frank"}
    assert any("carol@example.com" in line and "SMS" in line for line in lines)


def test_users_list_json_and_filter(run: Runner) -> None:
    """`--json` prints parseable users; `--username` narrows the list to that user."""
    result = run("users", "list", "--username", "alice", "--json")
    assert result.status == 0, result.err
    users = json.loads(result.out)
    assert [user["username"] for user in users] == ["alice"]
    assert users[0]["email"] == "alice@example.com" and users[0]["id"]


def test_users_create_get_delete(run: Runner) -> None:
    """A created user can be shown by id and deleted with --yes; afterwards it is unknown."""
    created = run(
        "users",
        "create",
        "zoe",
        "--email",
        "zoe@example.com",
        "--mobile",
        "+15550100077",
        "--method",
        "SMS",
        "--json",
    )
    assert created.status == 0, created.err
    user = json.loads(created.out)
    assert (user["username"], user["auth_method"]) == ("zoe", "SMS")
    shown = run("users", "get", user["id"])
    assert shown.status == 0 and "zoe@example.com" in shown.out and "+15550100077" in shown.out
    deleted = run("users", "delete", user["id"], "--yes")
    assert deleted.status == 0, deleted.err
    missing = run("users", "get", user["id"])
    assert missing.status == 1 and "not found" in missing.err.lower()


def test_duplicate_create_fails_with_message(run: Runner) -> None:
    """Creating an existing user exits 1 and says why on stderr."""
    result = run("users", "create", "alice", "--email", "again@example.com")
    assert result.status == 1 and "already exists" in result.err and result.out == ""


def test_delete_asks_or_refuses_without_yes(run: Runner) -> None:
    """Without --yes: refused when not interactive, asks on a terminal and honours the answer."""
    alice = json.loads(run("users", "list", "--username", "alice", "--json").out)[0]
    refused = run("users", "delete", alice["id"])
    assert refused.status == 1 and "--yes" in refused.err
    declined = run("users", "delete", alice["id"], answers=("n",))
    assert declined.status == 1 and "not deleted" in declined.out
    assert run("users", "get", alice["id"]).status == 0
    confirmed = run("users", "delete", alice["id"], answers=("y",))
    assert confirmed.status == 0
    assert run("users", "get", alice["id"]).status == 1


def test_auth_code_accepted_and_rejected(run: Runner, sim: FicSimulator) -> None:
    """`fic auth --code` exits 0 for a good code and 1 with FIC's reason for a wrong one."""
    good = run("auth", "frank", "--code", "123456")
    assert good.status == 0 and "accepted" in good.out
    wrong = run("auth", "frank", "--code", "999999")
    assert wrong.status == 1 and "FIC refused" in wrong.err and "999999" not in wrong.err
    assert sim.counters()["code_checks"] == {"frank": 2}


def test_auth_code_from_prompt(run: Runner) -> None:
    """`--code -` reads the code without echo instead of from argv."""
    result = run("auth", "frank", "--code", "-", ask_secret=lambda prompt: "123456")
    assert result.status == 0 and "accepted" in result.out


def test_auth_push_waits_for_approval(run: Runner, sim: FicSimulator) -> None:
    """`fic auth --push` sends one push, prints progress and exits 0 once it is approved."""
    result = run("auth", "quick", "--push", "--poll-interval", "0.05", "--timeout", "5")
    assert result.status == 0, result.err
    assert "push sent" in result.out and "approved" in result.out
    assert sim.counters()["pushes"] == {"quick": 1}


def test_auth_push_denied_or_unanswered(run: Runner) -> None:
    """A denied push exits 1; an unanswered one gives up after --timeout and exits 1."""
    denied = run("auth", "nope", "--push", "--poll-interval", "0.05", "--timeout", "10")
    assert denied.status == 1 and "denied" in denied.out
    silent = run("auth", "erin", "--push", "--poll-interval", "0.05", "--timeout", "0.2")
    assert silent.status == 1 and "no answer within 0.2 s" in silent.out


def test_auth_sms_sends_then_checks_prompted_code(run: Runner, sim: FicSimulator) -> None:
    """`--method sms` sends a code; on a terminal it asks for the code and checks it."""
    sent = run("auth", "carol", "--method", "sms")
    assert sent.status == 0 and "code sent" in sent.out and len(sim.outbox("carol")) == 1
    checked = run(
        "auth", "carol", "--method", "sms", ask_secret=lambda prompt: sim.outbox("carol")[-1]
    )
    assert checked.status == 0 and "accepted" in checked.out


def test_auth_without_factor_previews(run: Runner, sim: FicSimulator) -> None:
    """`fic auth USER` alone only previews: it prints the action and sends nothing."""
    result = run("auth", "alice")
    assert result.status == 0 and "action MFA" in result.out and "method FTM" in result.out
    assert sim.counters()["auth_posts"] == {}


def test_version(run: Runner) -> None:
    """`fic version` prints the server version."""
    result = run("version")
    assert result.status == 0 and result.out.strip() == "2.5.0"


def test_missing_secret_is_a_config_error(run: Runner) -> None:
    """Without the secret variable the command exits 78 and names the variable."""
    result = run("users", "list", environ={})
    assert result.status == 78 and "FIC_CLIENT_SECRET" in result.err


def test_other_secret_variable(run: Runner) -> None:
    """--client-secret-env reads the secret from the named variable."""
    result = run("version", "--client-secret-env", "MY_FIC", environ={"MY_FIC": SECRET})
    assert result.status == 0


def test_no_connection_options_is_a_config_error(run: Runner) -> None:
    """Neither --config nor --base-url/--client-id exits 78."""
    result = run("version", connection=False)
    assert result.status == 78 and "--config" in result.err


def test_wrong_secret_and_unreachable_exit_1(run: Runner, sim: FicSimulator) -> None:
    """Refused credentials and an unreachable FIC exit 1 with a message naming the cause."""
    refused = run("users", "list", environ={"FIC_CLIENT_SECRET": "wrong-secret"})
    assert refused.status == 1 and "client id/secret" in refused.err
    assert "wrong-secret" not in refused.err
    sim.refuse_connections()
    down = run("users", "list")
    assert down.status == 1 and "unavailable" in down.err


def test_config_file(run: Runner, sim: FicSimulator, tmp_path: Path) -> None:
    """--config FILE takes the fic: section of the bridge configuration."""
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "fic:\n"
        f"  base_url: {sim.base_url}\n"
        "  client_id: demo-client\n"
        f"  client_secret: {SECRET}\n"
        "radius:\n"
        "  listen: ['127.0.0.1:18999']\n"
        "  clients:\n"
        "    - name: vpn\n"
        "      address: 127.0.0.1\n"
        "      secret: radius-secret-for-tests\n"
    )
    config.chmod(0o600)
    result = run("version", "--config", str(config), connection=False)
    assert result.status == 0, result.err
    assert result.out.strip() == "2.5.0"


def test_broken_config_file_exits_78(run: Runner, tmp_path: Path) -> None:
    """A configuration file that does not parse exits 78 with the file named."""
    config = tmp_path / "broken.yaml"
    config.write_text("fic: [\n")
    result = run("version", "--config", str(config), connection=False)
    assert result.status == 78 and "broken.yaml" in result.err


def test_real_terminal_keeps_stdout_for_output(
    sim: FicSimulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a shell, stdout holds only the JSON; --verbose logs each FIC call to stderr."""
    monkeypatch.setenv("FIC_CLIENT_SECRET", SECRET)
    try:
        status = admin.main(
            [
                "fic",
                "users",
                "list",
                "--json",
                "--verbose",
                "--base-url",
                sim.base_url,
                "--client-id",
                "demo-client",
            ]
        )
    finally:
        logs.reset_logging()
    captured = capsys.readouterr()
    assert status == 0
    assert "alice" in [user["username"] for user in json.loads(captured.out)]
    assert "fic.call" in captured.err and "GET /v2/user" in captured.err
    assert SECRET not in captured.err
