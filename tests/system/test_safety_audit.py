"""Static safety audit of the package source, and the runtime checks behind it.

No pickle anywhere; checkpoints load as safetensors or torch.load(weights_only=True); external tools run
from argument lists, never a shell, under a time limit; the server binds 127.0.0.1 unless told otherwise.
Each rule reads every module of src/orchestrion with `ast`, so a new violation fails here with its place.
"""

from __future__ import annotations

import ast
import inspect
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import orchestrion
from orchestrion.core.tools import run_tool
from orchestrion.errors import ToolFailed

SRC = Path(orchestrion.__file__).parent
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle", "shelve", "marshal", "jsonpickle"}
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
# subprocess calls allowed without `timeout=`, with the reason. The one tool runner passes its own
# required `timeout` through (checked below); nothing else may start a process without a limit.
UNTIMED_SUBPROCESS = {
    ("core/tools.py", "run_tool"): "the shared runner: `timeout` is a required argument, passed to subprocess.run",
    ("core/isolate.py", "_start"): "the long-lived child that engraves and synthesises: every call it answers has "
    "a deadline (Isolated.call), past which the child is killed",
}
# Imports of a module whose name is not written in the call, with the reason each is safe.
DYNAMIC_IMPORTS = {
    ("registry.py", "_load"): "names come from the fixed COMPOSERS and ENCODINGS tables, checked by its callers",
}
SAFE_MODEL_FILES = {".safetensors", ".json", ".npz", ".md", ".png", ".jsonl", ".txt"}


class Audit(ast.NodeVisitor):
    """Resolves names through a module's imports and collects calls as (dotted name, node, enclosing function)."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.imports: list[tuple[str, int]] = []
        self.calls: list[tuple[str, ast.Call, str]] = []
        self.strings: list[tuple[str, int]] = []
        self.function = "<module>"

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append((alias.name, node.lineno))
            self.aliases[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0]
            )

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self.imports.append((module, node.lineno))
        for alias in node.names:
            self.imports.append((f"{module}.{alias.name}", node.lineno))
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.strings.append((node.value, node.lineno))

    def dotted(self, node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            return f"{self.dotted(node.value)}.{node.attr}"
        if isinstance(node, ast.Call):
            return f"{self.dotted(node.func)}()"
        return "?"

    def visit_Call(self, node: ast.Call) -> None:
        self.calls.append((self.dotted(node.func), node, self.function))
        self.generic_visit(node)


def audits() -> dict[str, Audit]:
    """Every module of the package, by its path under src/orchestrion."""
    result = {}
    for path in sorted(SRC.rglob("*.py")):
        audit = Audit()
        audit.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        result[path.relative_to(SRC).as_posix()] = audit
    return result


AUDITS = audits()


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


Rule = Callable[[str, ast.Call, str, str], "str | None"]  # (dotted name, call, function, module) -> reason


def pickle_free_numpy(name: str, call: ast.Call, function: str, module: str) -> str | None:
    if name in ("numpy.load", "numpy.save") and not is_constant(keyword(call, "allow_pickle"), False):
        return "needs allow_pickle=False"
    return None


def safe_checkpoints(name: str, call: ast.Call, function: str, module: str) -> str | None:
    if name == "torch.load" and not is_constant(keyword(call, "weights_only"), True):
        return "needs weights_only=True"
    if name == "torch.save":
        # Weights go through safetensors; the optimizer state dict (tensors and numbers, loaded back
        # with weights_only=True) is the one thing torch.save may write.
        what = call.args[0] if call.args else None
        method = what.func if isinstance(what, ast.Call) and isinstance(what.func, ast.Attribute) else None
        if not (method is not None and method.attr == "state_dict" and "optim" in ast.unparse(method.value)):
            return "torch.save is for optimizer.state_dict() only; weights go to safetensors"
    if name.endswith(".from_pretrained") and not is_constant(keyword(call, "use_safetensors"), True):
        return "needs use_safetensors=True (else a pickled pytorch_model.bin would be loaded)"
    if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
        loader = keyword(call, "Loader")
        if loader is None or "SafeLoader" not in ast.unparse(loader):
            return "use yaml.safe_load"
    return None


SHELLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
          "asyncio.create_subprocess_shell", "pty.spawn"}  # fmt: skip


def no_eval_or_shell(name: str, call: ast.Call, function: str, module: str) -> str | None:
    if name in ("eval", "exec", "compile"):
        return "no eval/exec of data"
    dynamic = name in ("__import__", "importlib.import_module") and not isinstance(call.args[0], ast.Constant)
    if dynamic and (module, function) not in DYNAMIC_IMPORTS:
        return "imports a module named by data"
    if name in SHELLS or name.startswith(("os.spawn", "os.exec", "os.posix_spawn")):
        return "runs a shell or replaces the process"
    shell = keyword(call, "shell")
    if shell is not None and not is_constant(shell, False):
        return "shell=True"
    return None


def timed_subprocesses(name: str, call: ast.Call, function: str, module: str) -> str | None:
    package, _, attr = name.rpartition(".")
    if package != "subprocess" or attr not in SUBPROCESS_CALLS:
        return None
    if isinstance(call.args[0] if call.args else None, ast.Constant | ast.JoinedStr | ast.BinOp):
        return "the command must be an argument list, not a string"
    if (module, function) in UNTIMED_SUBPROCESS:
        return None
    if attr == "Popen" or keyword(call, "timeout") is None:
        return "no timeout= (use orchestrion.core.tools.run_tool)"
    return None


RULES = (pickle_free_numpy, safe_checkpoints, no_eval_or_shell, timed_subprocesses)


def violations(rule: Rule, audits: dict[str, Audit] = AUDITS) -> list[str]:
    found = []
    for module, audit in audits.items():
        for name, call, function in audit.calls:
            reason = rule(name, call, function, module)
            if reason:
                found.append(f"{module}:{call.lineno} {name}: {reason}")
    return found


def test_the_audit_sees_the_whole_package() -> None:
    assert len(AUDITS) > 30 and "core/tools.py" in AUDITS and "server/app.py" in AUDITS
    names = {name for audit in AUDITS.values() for name, _, _ in audit.calls}
    # The rules match on these resolved names: if the resolver broke, they would pass vacuously.
    assert {"subprocess.run", "torch.load", "torch.save", "numpy.load", "uvicorn.run"} <= names


def test_the_rules_catch_each_kind_of_violation() -> None:
    source = """
import numpy as np, subprocess as sp, os, torch, yaml
from pickle import loads
from transformers import GPT2LMHeadModel
np.load("a.npy"); np.save("a.npy", x, allow_pickle=True)
torch.load("m.pt"); torch.save(model, "m.pt"); GPT2LMHeadModel.from_pretrained(d); yaml.load(text)
eval(text); os.system("ls"); sp.run(["ls"], shell=True, timeout=1); sp.run(["ls"]); sp.check_output("ls -l", timeout=1)
torch.save(optimizer.state_dict(), "opt.pt"); torch.load("opt.pt", weights_only=True)
"""
    audit = Audit()
    audit.visit(ast.parse(source))
    found = [v for rule in RULES for v in violations(rule, {"bad.py": audit})]
    assert sorted(v.split(":", 2)[1] for v in found) == sorted([
        "5 numpy.load", "5 numpy.save", "6 torch.load", "6 torch.save", "6 transformers.GPT2LMHeadModel.from_pretrained",
        "6 yaml.load", "7 eval", "7 os.system", "7 subprocess.run", "7 subprocess.run", "7 subprocess.check_output",
    ])  # fmt: skip
    assert ("pickle.loads", 3) in audit.imports


def test_no_pickling_module_is_imported() -> None:
    found = [
        f"{module}:{line} imports {name}"
        for module, audit in AUDITS.items()
        for name, line in audit.imports
        if name.split(".")[0] in PICKLING_MODULES
    ]
    assert found == []


def test_numpy_never_loads_or_saves_pickles() -> None:
    assert violations(pickle_free_numpy) == []


def test_checkpoints_load_as_safetensors_or_weights_only() -> None:
    assert violations(safe_checkpoints) == []


def test_no_eval_exec_or_shell() -> None:
    assert violations(no_eval_or_shell) == []


def test_every_subprocess_has_a_time_limit() -> None:
    assert violations(timed_subprocesses) == []


def test_the_tool_runner_requires_a_timeout_and_passes_it_on() -> None:
    timeout = inspect.signature(run_tool).parameters["timeout"]
    assert timeout.kind is inspect.Parameter.KEYWORD_ONLY and timeout.default is inspect.Parameter.empty
    audit = AUDITS["core/tools.py"]
    (call,) = [c for name, c, function in audit.calls if name == "subprocess.run" and function == "run_tool"]
    assert ast.unparse(keyword(call, "timeout")) == "timeout"
    assert keyword(call, "shell") is None and ast.unparse(call.args[0]) == "args"


def test_run_tool_kills_a_tool_past_its_time_limit() -> None:
    started = time.monotonic()
    with pytest.raises(ToolFailed, match="did not finish within 0.5 s"):
        run_tool(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - started < 15  # killed, not waited for: sleep would take 30 s


def test_run_tool_passes_shell_metacharacters_literally(tmp_path: Path) -> None:
    hostile = "; rm -rf x && touch pwned $(touch pwned2) `touch pwned3` | cat > pwned4 * ~ 'q\" \n"
    (tmp_path / "x").mkdir()
    result = run_tool(["printf", "%s", hostile], timeout=10, cwd=tmp_path)
    assert result.stdout.decode() == hostile
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # nothing ran, nothing was removed


def test_builtin_models_hold_no_pickles() -> None:
    files = [p for p in (SRC / "builtin").rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert [p for p in files if p.suffix not in SAFE_MODEL_FILES] == []
    for path in files:
        head = path.read_bytes()[:2]
        assert head not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), f"{path} is a pickle"
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                assert all(data[key].dtype != object for key in data.files)


def test_serve_binds_127_0_0_1_by_default() -> None:
    from orchestrion import cli

    assert inspect.signature(cli.serve).parameters["host"].default == "127.0.0.1"
    audit = AUDITS["cli.py"]
    (call,) = [c for name, c, function in audit.calls if name == "uvicorn.run"]
    assert ast.unparse(keyword(call, "host")) == "host"  # the option, never a literal
    wildcard = [
        f"{module}:{line}"
        for module, audit in AUDITS.items()
        for text, line in audit.strings
        if text == "0.0.0.0" or (text == "::" and not module.startswith("abc/"))  # "::" is also ABC's repeat bar
    ]
    assert wildcard == []
