"""The command line: options -> one call into app -> render -> exit code. No business logic here.

Each command imports what it uses when it runs: `--help`, `--version` and `validate` (a pre-commit hook)
load click and little else; tests/test_cli_imports.py guards that.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reconciler import __version__
from reconciler.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, EXIT_SIGTERM, Interrupted, ReconcilerError
from reconciler.render import clean, clean_lines

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.diagnostics import Diagnostic
    from reconciler.results import PlanResult

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal (CI logs, files, PR comments) lines are not wrapped at 80 columns.
    width = None if stream.isatty() else int(os.environ.get("COLUMNS") or 0) or 160
    return Console(stderr=stderr, highlight=False, soft_wrap=False, file=stream, width=width)


def _github_default() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _annotation(d: Diagnostic) -> str:
    def esc(s: str) -> str:
        return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(s: str) -> str:
        return esc(s).replace(":", "%3A").replace(",", "%2C")

    kind = "error" if d.is_error else "warning"
    where = ",".join(x for x in (f"file={prop(clean(d.file))}" if d.file else "",
                                 f"line={d.line}" if d.line else "", f"col={d.column}" if d.column else "") if x)
    title = f"title={prop('reconcile ' + d.code)}"
    return f"::{kind} {where + ',' if where else ''}{title}::{esc(clean(d.message))}"


def _emit_diagnostics(diags: Sequence[Diagnostic], github: bool = False) -> None:
    for d in diags:
        click.echo(clean(d.format()), err=True)
        if github:
            click.echo(_annotation(d))


def _emit_notes(result: PlanResult) -> None:
    for note in result.notes:
        click.echo(f"warning: {clean_lines(note)}", err=True)


def platform_option(f: F) -> F:
    return click.option("--platform", "platform_url", metavar="URL", envvar=None,
                        help="Platform URL: sqlite:///PATH, https://HOST, or a plug-in's scheme (default: "
                             "$RECONCILE_PLATFORM, reconcile.toml, then sqlite:///.reconcile/platform.db).")(f)


def state_option(f: F) -> F:
    return click.option("--state", "state_path", metavar="PATH|URL",
                        help="State file, or postgresql://... for a shared state (default: $RECONCILE_STATE, "
                             "reconcile.toml, then .reconcile/state.json).")(f)


def targeting_options(f: F) -> F:
    f = click.option("--exclude", "excludes", multiple=True, metavar="PATTERN",
                     help="Leave out the moves whose name matches (shell-style glob; repeatable).")(f)
    return click.option("--target", "targets", multiple=True, metavar="PATTERN",
                        help="Only the moves whose name matches (shell-style glob; repeatable).")(f)


COMPACT_ABOVE = 20  # moves: apply lists a larger batch one line per move
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _StderrLog(logging.Handler):
    """--verbose: one line per platform call on stderr (resolved at each write, so captured runs see it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(clean(self.format(record)), err=True)


def _verbose(verbose: bool) -> None:
    logger = logging.getLogger("reconciler")
    if not any(isinstance(h, _StderrLog) for h in logger.handlers):
        logger.addHandler(_StderrLog())
    logger.setLevel(logging.INFO if verbose else logging.WARNING)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="reconcile")
@click.option("-v", "--verbose", is_flag=True, help="Log every platform call on stderr (method, path, status, "
                                                    "time, attempt; never a token or a value).")
def cli(verbose: bool) -> None:
    """Move customers between resellers, the GitOps way.

    Write a move manifest, review `reconcile plan` in a pull request, and after the merge
    `reconcile apply` provisions it: once, idempotently, journaled in a state file.

    \b
    Typical loop:
      reconcile new-move acme northwind > moves/acme.yaml   # a ready manifest
      reconcile validate moves/                              # offline, for pre-commit
      reconcile plan moves/                                  # rules + what changes
      reconcile apply moves/                                 # after review
      reconcile status                                       # recorded moves and requests

    Exit codes: 0 success; 1 any error; plan --detailed-exitcode: 2 when there are changes.
    """
    _verbose(verbose)


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default=None,
              help="text (default), json ({valid, diagnostics}) or github (workflow annotations; the default "
                   "when GITHUB_ACTIONS=true).")
def validate(paths: tuple[str, ...], fmt: str | None) -> None:
    """Check manifests offline: YAML, JSON Schema, unique names. No platform needed.

    PATH may be a file or a directory (searched recursively for *.yaml and *.yml).
    Fast and side-effect free: made for pre-commit hooks and editors.
    """
    from reconciler import validation
    from reconciler.render import validation as out

    fmt = fmt or ("github" if _github_default() else "text")
    result = validation.validate(paths)
    if fmt == "json":
        click.echo(out.json(result))
        _emit_diagnostics(result.diagnostics)
    else:
        _emit_diagnostics(result.diagnostics, github=fmt == "github")
        click.echo(out.text(result), err=fmt == "github")
    sys.exit(EXIT_OK if result.valid else EXIT_ERROR)


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "github"]), default="text",
              show_default=True, help="text for people, json (contract section 6), markdown for a PR comment, "
                                      "github: text plus workflow annotations.")
@click.option("--out", "out", metavar="PLANFILE", help="Also save the plan (with its manifests) for "
                                                       "`reconcile apply --plan PLANFILE`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 with no changes, 1 on error, 2 with changes.")
@click.option("--show-users", default="20", metavar="N|all", show_default=True,
              help="How many changed users to list per move in text output.")
@click.option("--allow-empty", is_flag=True, help="Succeed when the paths hold no move (by default an error: a "
                                                  "wrong path must not pass).")
@targeting_options
@platform_option
@state_option
def plan(paths: tuple[str, ...], fmt: str, out: str | None, detailed_exitcode: bool, show_users: str,
         allow_empty: bool, targets: tuple[str, ...], excludes: tuple[str, ...], platform_url: str | None,
         state_path: str | None) -> None:
    """Check every move rule and show what changes, for the customer and every user.

    Reads the platform and the state file; changes nothing. Moves are planned in argument
    order (a directory in sorted path order), each against the platform as the valid moves
    before it would leave it, so capacity is counted across the batch. The [policy] of
    reconcile.toml (limits, frozen resellers) is checked too: a violation is an error.

    \b
    Examples:
      reconcile plan moves/                                   # every move
      reconcile plan moves/ --target 'acme-*'                 # only moves named acme-...
      reconcile plan moves/ --exclude 'globex-to-northwind'   # all but one
      reconcile plan moves/ --target 'eu-*' --out plan.json   # saved: apply --plan keeps the targets

    With --target/--exclude the plan is partial: it says so and lists the moves it left out
    (not planned, not checked against the policy). Files with YAML or schema errors still
    count: they are not moves, so no pattern leaves them out.
    """
    from reconciler import app, config

    limit = _show_users(show_users)
    settings = config.resolve(platform_url, state_path)
    result = app.plan(paths, settings, targets, excludes)
    github = fmt == "github" or (_github_default() and fmt == "text")
    _emit_notes(result)
    _emit_diagnostics(list(result.plan.all_diagnostics()), github=github)
    if result.plan.applyable:
        app.require_moves(result, allow_empty)
    if out:
        app.write_plan_file(result, out)
    if fmt == "json":  # each renderer imported only when used: rich is no small import
        from reconciler.render import json as json_out

        json_out.write_plan(result, sys.stdout)
    elif fmt == "markdown":
        from reconciler.render import markdown as md_out

        click.echo(md_out.plan(result))
    else:
        from reconciler.render import text as text_out

        text_out.plan(_console(), result, limit)
        if out:
            click.echo(f"\nSaved the plan to {out}; apply exactly it with `reconcile apply --plan {out}`.")
    if not result.plan.applyable:
        sys.exit(EXIT_ERROR)
    if detailed_exitcode and result.plan.changes:
        sys.exit(EXIT_CHANGES)
    sys.exit(EXIT_OK)


def _show_users(raw: str) -> int | None:
    if raw == "all":
        return None
    try:
        n = int(raw)
    except ValueError:
        raise click.BadParameter("give a number or 'all'", param_hint="--show-users") from None
    if n < 0:
        raise click.BadParameter("give a number >= 0 or 'all'", param_hint="--show-users")
    return n


@cli.command()
@click.argument("paths", nargs=-1, metavar="[PATH...]")
@click.option("--plan", "plan_file", metavar="PLANFILE", help="Apply a plan saved with `plan --out`, "
                                                              "exactly as reviewed, instead of PATHs.")
@click.option("--auto-approve", is_flag=True, help="Do not ask; required when stdin is not a terminal.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, show_default=True, metavar="SECONDS",
              help="Wait this long for another run's state lock.")
@click.option("--parallelism", type=click.IntRange(min=1, max=256), default=4, show_default=True, metavar="N",
              help="Moves in flight at once (one customer's moves always go one after another); 1 = in order.")
@click.option("--wait-timeout", type=click.FloatRange(min=0), default=3600, show_default=True, metavar="SECONDS",
              help="Deadline for the whole run: then no new move is submitted, and moves still running on the "
                   "platform stay in-progress (exit 1; `reconcile status` finishes them later).")
@click.option("--no-wait", is_flag=True, help="Submit, record in-progress and exit 0 without waiting for the "
                                              "platform; `reconcile status` records the outcomes later.")
@click.option("--allow-empty", is_flag=True, help="Succeed when there is no move to apply (by default an error: "
                                                  "a wrong path must not pass).")
@targeting_options
@platform_option
@state_option
def apply(paths: tuple[str, ...], plan_file: str | None, auto_approve: bool, lock_timeout: float,
          parallelism: int, wait_timeout: float, no_wait: bool, allow_empty: bool, targets: tuple[str, ...],
          excludes: tuple[str, ...], platform_url: str | None, state_path: str | None) -> None:
    """Provision the planned moves, once, journaled in the state file.

    Re-checks every rule against the live platform and applies nothing if any move is
    invalid. Each request is journaled before it is submitted, so a re-run after a crash
    resumes it under the same id and never duplicates it; a re-run after a failure submits
    a new attempt. Up to --parallelism moves run at once; after the first failure no new
    move is submitted, and those in flight are waited for and recorded.

    \b
    Ctrl-C or SIGTERM: no new move is submitted, moves in flight are recorded (in-progress
    when the platform has not finished them), exit 130 or 143; run apply again to resume.

    \b
    Examples:
      reconcile apply moves/ --target 'acme-*'          # only moves named acme-...
      reconcile apply moves/ --exclude 'globex-*'       # all but those
      reconcile apply --plan plan.json                  # exactly as reviewed, targets included

    reconcile.toml [policy] is enforced again (a saved plan's own policy too): outside the
    [policy.apply_window] apply exits 1 (policy-outside-window) before it takes the lock,
    naming the next opening; when the window closes during a run, no new move is submitted.
    """
    from reconciler import app, config
    from reconciler.applier import Options
    from reconciler.render import text as text_out
    from reconciler.render.progress import ApplyProgress

    if bool(paths) == bool(plan_file):
        raise click.UsageError("give manifest PATHs or --plan PLANFILE (one of them)")
    if plan_file and (targets or excludes):
        raise click.UsageError("--target/--exclude cannot be used with --plan: a saved plan keeps the targets it "
                               "was made with")
    if not auto_approve and not sys.stdin.isatty():
        raise ReconcilerError("stdin is not a terminal, so apply cannot ask for approval",
                              hint="review `reconcile plan`, then run `reconcile apply --auto-approve`")
    settings = config.resolve(platform_url, state_path)
    out = _console()

    def show(result: PlanResult) -> None:
        _emit_notes(result)
        _emit_diagnostics(list(result.plan.all_diagnostics()))
        # A large batch was reviewed as a plan already: list it, one line per move.
        text_out.plan(out, result, 20, compact=len(result.plan.moves) > COMPACT_ABOVE, applying=True)

    def approve(result: PlanResult) -> bool:
        if auto_approve:
            return True
        try:
            answer = click.prompt("\nApply these changes? Only 'yes' is accepted", default="", show_default=False)
        except click.exceptions.Abort:  # end of input (Ctrl-D) or Ctrl-C at the prompt: declined, like "no"
            click.echo("", err=True)
            return False
        return bool(answer.strip() == "yes")

    progress = ApplyProgress(out)
    try:
        result = app.apply(settings, paths, plan_file, approve=approve, progress=progress,
                           lock_timeout=lock_timeout, on_plan=show, allow_empty=allow_empty,
                           options=Options(parallelism=parallelism, wait_timeout=wait_timeout, wait=not no_wait),
                           targets=targets, excludes=excludes)
    finally:
        progress.stop()
    if result.declined or result.applied or result.adopted or result.failed or result.in_progress:
        out.print()
        text_out.apply_result(out, result)
    elif result.state_written:
        out.print("Nothing to apply; recorded the outcome of requests that finished since the last run.")
    else:
        out.print("Nothing to apply: the state file was left as it was.")
    sys.exit(EXIT_OK if result.ok else EXIT_ERROR)


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME...]")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, metavar="SECONDS",
              help="Wait this long for another run's state lock.")
@platform_option
@state_option
def status(names: tuple[str, ...], fmt: str, lock_timeout: float, platform_url: str | None,
           state_path: str | None) -> None:
    """Refresh request statuses from the platform and show the recorded moves."""
    from reconciler import app, config
    from reconciler.render import json as json_out
    from reconciler.render import text as text_out
    from reconciler.urls import redact

    settings = config.resolve(platform_url, state_path)
    st = app.status(settings, names, lock_timeout)
    if fmt == "json":
        click.echo(json_out.status(st))
    else:
        text_out.status(_console(), st, redact(settings.state))  # a state URL: never its password


@cli.command()
@click.option("--customer", metavar="ID", help="Only the moves of this customer.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@state_option
def history(customer: str | None, fmt: str, state_path: str | None) -> None:
    """The recorded moves: when, by whom, from which commit, with which requests.

    From the state, plus git: who added each manifest and the commit that merged it; with
    the state in PostgreSQL, also every state version that recorded the move (who, when,
    which commit). Run it in the repository that holds the manifests.
    """
    from reconciler import app, config
    from reconciler.render import json as json_out
    from reconciler.render import text as text_out

    settings = config.resolve(None, state_path)
    entries = app.history(settings, customer)
    if fmt == "json":
        click.echo(json_out.history(entries))
    else:
        text_out.history(_console(), entries, customer)


@cli.group()
def state() -> None:
    """Move the state between stores: a file (in git) and PostgreSQL, either way.

    \b
      reconcile state pull --state .reconcile/state.json > state.json
      reconcile state push state.json --state postgresql://db.example/reconciler
    """


@state.command("pull")
@state_option
def state_pull(state_path: str | None) -> None:
    """Print the current state document (exit 1 when there is none)."""
    from reconciler import app, config

    settings = config.resolve(None, state_path)
    click.echo(app.state_pull(settings), nl=False)  # bytes: exactly the document


@state.command("push")
@click.argument("file", metavar="FILE")
@click.option("--force", is_flag=True, help="Replace a state of another lineage, or a newer one; the state written "
                                            "gets a serial above both.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, metavar="SECONDS",
              help="Wait this long for another run's state lock.")
@state_option
def state_push(file: str, force: bool, lock_timeout: float, state_path: str | None) -> None:
    """Replace the state with FILE, under the lock.

    Only when there is no state yet, or FILE has the same lineage and a newer serial;
    --force replaces any state, printing both lineages.
    """
    from reconciler import app, config

    settings = config.resolve(None, state_path)
    pushed = app.state_push(settings, file, force, lock_timeout)
    if pushed.forced and pushed.replaced:
        click.echo(clean(f"Forced: replaced lineage {pushed.replaced[0]} (serial {pushed.replaced[1]}) with "
                         f"lineage {pushed.lineage} from {file}."))
    click.echo(clean(f"Pushed {file} to {pushed.location}: lineage {pushed.lineage}, serial {pushed.serial}."))


@cli.command("new-move")
@click.argument("customer")
@click.argument("reseller")
@platform_option
def new_move(customer: str, reseller: str, platform_url: str | None) -> None:
    """Print a ready move manifest for CUSTOMER to RESELLER.

    Detected plan and SAL mappings are written out; what cannot be matched is left as a
    comment listing the destination's choices. Save it under your manifests folder, fill in
    the gaps, then `reconcile plan` it.
    """
    from reconciler import config, newmove

    settings = config.resolve(platform_url, None)
    click.echo(newmove.render(settings, customer, reseller), nl=False)


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "github"]), default="text",
              show_default=True, help="json: {drifted: [{move, customer, differences}]}; markdown for an issue; "
                                      "github: text plus a warning annotation per drifted move.")
@platform_option
@state_option
def drift(paths: tuple[str, ...], fmt: str, platform_url: str | None, state_path: str | None) -> None:
    """Compare every applied move among the manifests with the platform.

    A move has drifted when re-planning it would change something: the customer is no
    longer under its destination, or a plan or customer override it set differs. Changes
    nothing. Exit 0 when nothing drifted, 2 when something did, 1 on error. On a schedule:

    \b
      reconcile drift moves/ --format markdown > drift.md || test $? -eq 2
    """
    from reconciler import app, config
    from reconciler.render import drift as drift_out
    from reconciler.render import json as json_out

    settings = config.resolve(platform_url, state_path)
    report = app.drift(paths, settings)
    _emit_diagnostics(report.diagnostics)
    if fmt == "json":
        click.echo(json_out.dumps(report.to_json()))
    elif fmt == "markdown":
        click.echo(drift_out.markdown(report), nl=False)
    else:
        click.echo(drift_out.text(report))
        if fmt == "github":
            _emit_diagnostics(drift_out.diagnostics(report), github=True)
    sys.exit(EXIT_CHANGES if report.drifted else EXIT_OK)


@cli.command()
@click.argument("name")
@platform_option
@state_option
def revert(name: str, platform_url: str | None, state_path: str | None) -> None:
    """Print a manifest that moves the customer of applied move NAME back where it came from.

    Built from the platform's record of what NAME's request replaced: the previous reseller,
    each service's plan, the reverse SAL mappings and the customer overrides the move changed
    (a sensitive value is never written: a comment names it). Save it, plan it, review it:

    \b
      reconcile revert acme-to-northwind > moves/acme-to-northwind-revert.yaml
      reconcile plan moves/acme-to-northwind-revert.yaml
    """
    from reconciler import app, config

    settings = config.resolve(platform_url, state_path)
    result = app.revert(settings, name)
    for w in result.warnings:
        click.echo(f"warning: {clean(w)}", err=True)
    click.echo(result.manifest, nl=False)


@cli.group()
def platform() -> None:
    """Create, export and serve the embedded platform (sqlite:///PATH); list the platform providers."""


@platform.command("init")
@click.option("--seed", required=True, metavar="FILE", help="A kind: Platform document (.yaml/.yml or .json).")
@click.option("--force", is_flag=True, help="Replace an existing platform (its data and requests are lost).")
@platform_option
def platform_init(seed: str, force: bool, platform_url: str | None) -> None:
    """Create the embedded platform from a seed; nothing is created if the seed has any problem."""
    from reconciler import app, config

    settings = config.resolve(platform_url, None)
    url, counts = app.platform_init(settings, seed, force)
    from reconciler.render import counts as tally

    click.echo(f"Created {url}: {tally(counts)}")


@platform.command("export")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@platform_option
def platform_export(fmt: str, platform_url: str | None) -> None:
    """Print the live platform as a seed document, requests included (round-trips through init)."""
    from reconciler import app, config
    from reconciler.render import export  # every unprintable character escaped, as in every other output

    settings = config.resolve(platform_url, None)
    doc = app.platform_export(settings)

    if fmt == "json":
        click.echo(export.to_json(doc))
    else:
        click.echo(export.to_yaml(doc), nl=False)


@platform.command("serve")
@click.option("--platform", "platform_url", required=True, metavar="sqlite:///PATH",
              help="The embedded platform to serve.")
@click.option("--listen", default="127.0.0.1:8700", show_default=True, metavar="HOST:PORT",
              help="Address to listen on; port 0 picks a free one. Off loopback, --tls-cert/--tls-key are needed.")
@click.option("--workers", type=click.IntRange(min=1, max=256), default=16, show_default=True,
              help="Requests provisioned at once (one customer's always one after another).")
@click.option("--provision-seconds", type=click.FloatRange(min=0, max=3600), default=0.0, show_default=True,
              metavar="S", help="Hold each request InProgress this long before executing it.")
@click.option("--token-file", metavar="FILE", help="The write token (default: $RECONCILE_SERVER_TOKEN).")
@click.option("--read-token-file", metavar="FILE",
              help="A read-only token: every read route, no submit, no sensitive value "
                   "(default: $RECONCILE_SERVER_READ_TOKEN).")
@click.option("--tls-cert", metavar="FILE", help="TLS certificate (PEM), with --tls-key: serve https.")
@click.option("--tls-key", metavar="FILE", help="TLS private key (PEM).")
def platform_serve(platform_url: str, listen: str, workers: int, provision_seconds: float, token_file: str | None,
                   read_token_file: str | None, tls_cert: str | None, tls_key: str | None) -> None:
    """Serve an embedded platform through the Platform API (schemas/platform-api.yaml).

    Prints `serving sqlite:///PATH at http://HOST:PORT` when ready. Requests are provisioned
    asynchronously and survive a restart; SIGTERM/SIGINT finish the requests in hand, then exit 0.
    Needs the server extra: pip install 'reconciler[server]'.
    """
    from reconciler.platforms import server

    server.serve(server.ServeOptions(platform_url, listen, workers, provision_seconds, token_file, read_token_file,
                                     tls_cert, tls_key), {"config_dir": os.getcwd()})


@platform.command("providers")
def platform_providers() -> None:
    """List the platform providers this installation can open: URL scheme, distribution, version."""
    from reconciler.platforms import providers

    rows = [("SCHEME", "DISTRIBUTION", "VERSION")] + [(f"{p.scheme}://", p.distribution, p.version)
                                                      for p in providers()]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for r in rows:
        click.echo(clean(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}"))


def _terminated(signum: int, frame: Any) -> None:
    raise Interrupted("terminated by SIGTERM", EXIT_SIGTERM)


# A plan builds hundreds of thousands of small objects (users, their services, plan entries), few of them in
# cycles. CPython's default (a young collection every 700 allocations, the older generations scanned in turn)
# spent a fifth of a 1,000-move plan walking them again and again; cycles are still collected, less often.
GC_THRESHOLD = (50_000, 20, 10)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: the one error boundary. Never a traceback for anything a user can type."""
    gc.set_threshold(*GC_THRESHOLD)
    signal.signal(signal.SIGTERM, _terminated)  # finally-blocks run: no half-written file is left
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="reconcile", standalone_mode=False)
    except ReconcilerError as e:
        click.echo(f"error: {clean_lines(e.message)}", err=True)
        if e.hint:
            click.echo(f"  hint: {clean_lines(e.hint)}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.UsageError as e:
        e.show()
        sys.exit(EXIT_ERROR)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_ERROR)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_ERROR)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: say so plainly, without a traceback
        if os.environ.get("RECONCILE_DEBUG"):
            raise
        click.echo(f"error: internal error ({type(e).__name__}: {clean(e)}); this is a bug in reconciler "
                   f"{__version__}. Re-run with RECONCILE_DEBUG=1 for details and report it.", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK)
