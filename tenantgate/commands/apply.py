"""``tenantgate apply FILE.yaml``: make plans, tenants and keys match a file (see tenants/declarative)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tenantgate.commands.common import JsonFlag, fail, publish_invalidations, run

if TYPE_CHECKING:
    from tenantgate.settings import Settings
    from tenantgate.tenants.declarative import ApplyResult, ConfigSpec, NewKey


def load_spec(path: Path) -> ConfigSpec:
    import yaml
    from pydantic import ValidationError

    from tenantgate.tenants.declarative import ConfigSpec

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", 2) from None
    except yaml.YAMLError as exc:
        raise fail(f"{path} is not valid YAML: {exc}", 2) from None
    try:
        return ConfigSpec.model_validate(document)
    except ValidationError as exc:
        lines = [f"{_location(error['loc'])}: {error['msg']}" for error in exc.errors()]
        raise fail(f"{path} is not a valid tenantgate config:\n  " + "\n  ".join(lines), 2) from None


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _write_keys(path: Path, keys: list[NewKey]) -> None:
    """Append one JSON object per new key; the file is created readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        for key in keys:
            out.write(json.dumps({"tenant": key.tenant, "name": key.name, "id": key.id, "key": key.key}) + "\n")


async def _apply(settings: Settings, spec: ConfigSpec, *, prune: bool, dry_run: bool, keys_file: Path | None) -> Any:
    from tenantgate import database
    from tenantgate.tenants.declarative import APPLY_ACTOR, reconcile
    from tenantgate.tenants.operation import Operation

    engine = database.create_engine(settings.database_url)
    try:
        async with database.create_sessionmaker(engine)() as session:
            operation = Operation(session, APPLY_ACTOR, settings.secret_key_bytes)
            try:
                result = await reconcile(operation, spec, prune=prune)
                if dry_run:
                    await session.rollback()
                    return result
                if keys_file is not None and result.new_keys:
                    _write_keys(keys_file, result.new_keys)  # before commit: a key is never created unseen
                await operation.log_invalidations()
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
        await publish_invalidations(settings, operation.invalidations)
        return result
    finally:
        await engine.dispose()


def _human(result: ApplyResult, *, dry_run: bool, keys_file: Path | None) -> str:
    if not result.changes:
        return "no changes"
    lines = [change.describe() for change in result.changes]
    count = f"{len(result.changes)} change{'s' if len(result.changes) != 1 else ''}"
    lines.append(f"dry run: {count}, nothing applied" if dry_run else f"{count} applied")
    if result.new_keys and not dry_run:
        if keys_file is not None:
            lines.append(f"wrote {len(result.new_keys)} new key(s) to {keys_file}")
        else:
            lines.append("\nNew keys (shown once, store them now):")
            lines.extend(f"  {key.tenant}/{key.name}  {key.id}  {key.key}" for key in result.new_keys)
    return "\n".join(lines)


def _json(result: ApplyResult, *, dry_run: bool, keys_file: Path | None) -> str:
    keys = [] if dry_run else result.new_keys
    return json.dumps(
        {
            "dry_run": dry_run,
            "changes": [change.as_json() for change in result.changes],
            "new_keys": [
                {"tenant": k.tenant, "name": k.name, "id": k.id, "prefix": k.prefix}
                | ({} if keys_file is not None else {"key": k.key})
                for k in keys
            ],
        }
    )


def apply(
    file: Annotated[Path, typer.Argument(help="YAML file declaring plans, tenants and their keys")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the changes without making them")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Remove plans, tenants and keys the file omits")] = False,
    keys_file: Annotated[
        Path | None,
        typer.Option("--keys-file", help="Append new keys' plaintexts to this file (mode 0600), not to stdout"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make plans, tenants and keys match FILE. Idempotent: a second apply changes nothing."""
    spec = load_spec(file)
    result: ApplyResult = run(lambda s: _apply(s, spec, prune=prune, dry_run=dry_run, keys_file=keys_file))
    if as_json:
        typer.echo(_json(result, dry_run=dry_run, keys_file=keys_file))
    else:
        typer.echo(_human(result, dry_run=dry_run, keys_file=keys_file))
