"""Finding and loading connectors: a directory, or an installed package (entry points)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from engine.errors import ConnectorInvalid
from engine.models import MAX_DOCUMENT_BYTES, ConnectorManifest, oversized, parse
from installers._registry import Registry

ENTRY_POINT_GROUP = "smartconnector.connectors"
MANIFEST = "connector.json"


@dataclass(frozen=True)
class Connector:
    """A loaded connector: its manifest, its functions and where they came from."""

    manifest: ConnectorManifest
    registry: Registry
    directory: Path
    #: Where the connector was found: its directory, or ``dist-name (entry point)``.
    provenance: str


def load_connector(directory: str | Path) -> Connector:
    """Load ``connector.json`` and its functions from ``directory``; errors name the field."""
    path = Path(directory).resolve()
    manifest = read_manifest(path)
    registry = _load_functions(path, manifest)
    return Connector(manifest, registry, path, str(path))


#: A connector.json larger than this is not even read to find its largest field.
READ_AT_MOST = 64 * MAX_DOCUMENT_BYTES


def read_manifest(directory: Path) -> ConnectorManifest:
    file = directory / MANIFEST
    if not directory.is_dir():
        raise ConnectorInvalid(f"{directory}: not a connector directory", field="CONNECTOR_DIR")
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConnectorInvalid(f"{file}: cannot read: {exc.strerror}", field=MANIFEST) from None
    if len(raw) > READ_AT_MOST:
        raise ConnectorInvalid(
            f"{file}: {len(raw)} bytes, over the {MAX_DOCUMENT_BYTES} byte limit", field=MANIFEST
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConnectorInvalid(f"{file}: not valid JSON: {exc}", field=MANIFEST) from None
    if len(raw) > MAX_DOCUMENT_BYTES:  # say which field makes it so
        raise oversized(data, len(raw), str(file), ConnectorInvalid)
    return parse(ConnectorManifest, data, what=str(file), error=ConnectorInvalid)


def _load_functions(directory: Path, manifest: ConnectorManifest) -> Registry:
    target = manifest.functions
    if target is None:
        default = directory / "functions.py"
        if not default.exists():
            return Registry(manifest.name)
        target = "functions.py"
    if target.endswith(".py"):
        module = _import_file(directory / target)
    else:
        module = _import_module(target, directory)
    return _registry_of(module, manifest)


def _import_file(file: Path) -> ModuleType:
    if not file.is_file():
        raise ConnectorInvalid(f"functions: {file} does not exist", field="functions")
    name = f"smartconnector_functions_{abs(hash(str(file))):x}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - only for non-.py files
        raise ConnectorInvalid(f"functions: cannot import {file}", field="functions")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConnectorInvalid(
            f"functions: {_where(exc, file)}: {type(exc).__name__}: {exc}", field="functions"
        ) from None
    return module


def _import_module(target: str, directory: Path) -> ModuleType:
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(target)
    except Exception as exc:
        raise ConnectorInvalid(
            f"functions: cannot import {target!r}: {type(exc).__name__}: {exc}", field="functions"
        ) from None
    finally:
        sys.path.remove(str(directory))


def _where(exc: BaseException, file: Path) -> str:
    """``file:line`` of the failure inside ``file`` (SyntaxErrors carry their own line)."""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return f"{exc.filename or file}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == file]
    return f"{file}:{frames[-1].lineno}" if frames else str(file)


def _registry_of(module: ModuleType, manifest: ConnectorManifest) -> Registry:
    found = [v for v in vars(module).values() if isinstance(v, Registry)]
    named = getattr(module, "registry", None)
    if isinstance(named, Registry):
        return named
    if len(found) == 1:
        return found[0]
    where = getattr(module, "__file__", module.__name__)
    if not found:
        raise ConnectorInvalid(f"functions: {where} defines no Registry", field="functions")
    raise ConnectorInvalid(
        f"functions: {where} defines {len(found)} registries; name the one to use `registry`",
        field="functions",
    )


def load_entry_point(value: str) -> Connector:
    """Load the connector whose package ``value`` (an entry point's module) names."""
    module = importlib.import_module(value.split(":")[0])
    file = getattr(module, "__file__", None)
    if file is None:
        raise ConnectorInvalid(f"entry point {value!r}: module has no file", field="entry point")
    connector = load_connector(Path(file).parent)
    dist = getattr(module, "__package__", value)
    return Connector(
        connector.manifest, connector.registry, connector.directory, f"{dist} (entry point {value})"
    )


def find_installed(connector_id: str) -> Connector | None:
    """The installed connector package whose manifest has ``connector_id``, if any."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            connector = load_entry_point(ep.value)
        except ConnectorInvalid:
            continue
        if connector.manifest.connector_id == connector_id:
            return connector
    return None
