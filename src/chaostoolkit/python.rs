//! Running Chaos Toolkit `python` providers (and what faultline cannot run
//! natively: tolerance probes, HTTP rollbacks without curl) through the
//! system's python3, as a command. The activity travels in an environment
//! variable (not argv, so secrets do not show in `ps`); the script prints the
//! result as JSON on stdout, as chaoslib would return it.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Environment variable that carries the activity to the script.
pub const SPEC_ENV: &str = "FAULTLINE_CTK_ACTIVITY";

/// The script run by `python3 -c`. Modes: `run` prints the provider's result;
/// `tolerance` runs the provider, then the tolerance probe with
/// `value=<result>`, and exits 0 when that returned a true value.
pub const SCRIPT: &str = r#"
import json, os, sys
spec = json.loads(os.environ["FAULTLINE_CTK_ACTIVITY"])

def run(provider, extra=None):
    t = provider.get("type")
    if t == "python":
        import importlib, inspect
        func = getattr(importlib.import_module(provider["module"]), provider["func"])
        args = dict(provider.get("arguments") or {})
        if extra:
            args.update(extra)
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            params = {}
        if "secrets" in provider and "secrets" in params:
            s = {}
            for scope in provider.get("secrets") or []:
                s.update(spec.get("secrets", {}).get(scope, {}))
            args["secrets"] = s
        if "configuration" in params:
            args["configuration"] = dict(spec.get("configuration", {}))
        return func(**args)
    if t == "process":
        import shutil, subprocess
        path = shutil.which(os.path.expanduser(provider["path"])) or provider["path"]
        a = provider.get("arguments") or []
        if isinstance(a, str):
            cmd, shell = path + " " + a, True
        else:
            if isinstance(a, dict):
                a = [x for kv in a.items() for x in kv]
            cmd, shell = [path] + [str(x) for x in a if x not in (None, "")], False
        p = subprocess.run(cmd, shell=shell, capture_output=True, timeout=provider.get("timeout"))
        return {"status": p.returncode, "stdout": p.stdout.decode("utf-8", "replace"),
                "stderr": p.stderr.decode("utf-8", "replace")}
    if t == "http":
        import urllib.error, urllib.parse, urllib.request
        method = provider.get("method", "GET").upper()
        headers = dict(provider.get("headers") or {})
        args = provider.get("arguments")
        url, data = provider["url"], None
        if args and method == "GET":
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(args, doseq=True)
        elif args is not None and method != "GET":
            if headers.get("Content-Type") == "application/json":
                data = json.dumps(args).encode()
            elif isinstance(args, str):
                data = args.encode()
            else:
                data = urllib.parse.urlencode(args, doseq=True).encode()
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        timeout = provider.get("timeout")
        if isinstance(timeout, list):
            # urllib has one socket timeout, for connecting and each read.
            timeout = max(timeout)
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            r = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            r = e
        body = r.read().decode("utf-8", "replace")
        if r.headers.get("Content-Type") == "application/json":
            try:
                body = json.loads(body)
            except ValueError:
                pass
        return {"status": r.status if hasattr(r, "status") else r.code,
                "headers": dict(r.headers.items()), "body": body}
    raise SystemExit("unknown provider type %r" % (t,))

try:
    result = run(spec["provider"])
except Exception as e:
    sys.stderr.write("activity failed: %s: %s\n" % (type(e).__name__, e))
    sys.exit(1)
if spec.get("mode") == "tolerance":
    tol = spec["tolerance"]
    try:
        ok = run(tol["provider"], {"value": result})
    except Exception as e:
        sys.stderr.write("tolerance probe failed: %s: %s\n" % (type(e).__name__, e))
        ok = False
    print(json.dumps({"value": result, "tolerance_met": bool(ok)}, default=str))
    sys.exit(0 if ok else 1)
print(json.dumps(result, default=str))
"#;

/// The argv and environment of a command that runs `spec` through python3.
pub fn command(spec: &Value) -> (Vec<String>, BTreeMap<String, String>) {
    let mut env = BTreeMap::new();
    env.insert(SPEC_ENV.to_string(), spec.to_string());
    (vec!["python3".into(), "-c".into(), SCRIPT.into()], env)
}

/// The pip package that provides a well-known Chaos Toolkit extension module.
fn package_hint(module: &str) -> String {
    let top = module.split('.').next().unwrap_or(module);
    let known = [
        ("chaosk8s", "chaostoolkit-kubernetes"),
        ("chaosaws", "chaostoolkit-aws"),
        ("chaosazure", "chaostoolkit-azure"),
        ("chaosgcp", "chaostoolkit-google-cloud-platform"),
        ("chaosprometheus", "chaostoolkit-prometheus"),
        ("chaostoxi", "chaostoolkit-toxiproxy"),
        ("chaosreliably", "chaostoolkit-reliably"),
        ("chaosaddons", "chaostoolkit-addons"),
        ("chaosspring", "chaostoolkit-spring"),
        ("chaoslib", "chaostoolkit-lib"),
    ];
    match known.iter().find(|(m, _)| *m == top) {
        Some((_, pkg)) => format!("install it with `pip install {pkg}`"),
        None => format!(
            "install the Python package that provides `{top}` (its pip name may differ) or put its directory on PYTHONPATH"
        ),
    }
}

/// Finds a module's top-level package without running any of its code:
/// a search of the import path (PYTHONPATH, the current directory, the
/// user's and the system's site-packages) for its file or directory. Python
/// runs isolated (`-I`): no startup file, nothing from the current directory.
const FIND_SCRIPT: &str = r#"
import importlib.machinery, os, site, sys
top = sys.argv[1].split(".")[0]
if top in sys.builtin_module_names or importlib.machinery.FrozenImporter.find_spec(top):
    sys.exit(0)
paths = [p for p in sys.argv[2].split(os.pathsep) if p] + [os.getcwd()]
try:
    paths.append(site.getusersitepackages())
except Exception:
    pass
paths += [p for p in sys.path if p]
sys.exit(0 if importlib.machinery.PathFinder.find_spec(top, paths) else 1)
"#;

static CHECKED: Mutex<Vec<(String, Result<(), String>)>> = Mutex::new(Vec::new());

/// Whether python3 can find `module` (its top-level package; nothing is
/// imported, so validating a file runs none of its code): `Err` says what
/// to install.
pub fn check_module(module: &str) -> Result<(), String> {
    if let Some((_, r)) = CHECKED.lock().unwrap().iter().find(|(m, _)| m == module) {
        return r.clone();
    }
    let r = if crate::sys::exec::find_program("python3").is_none() {
        Err("python providers run through python3, which is not installed: install the Debian package `python3`".to_string())
    } else {
        match std::process::Command::new("python3")
            .args(["-I", "-c", FIND_SCRIPT, module])
            .arg(std::env::var_os("PYTHONPATH").unwrap_or_default())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Ok(s) if s.success() => Ok(()),
            Ok(_) => Err(format!(
                "python3 cannot find the module `{module}`: {}",
                package_hint(module)
            )),
            Err(e) => Err(format!("cannot run python3: {e}")),
        }
    };
    CHECKED
        .lock()
        .unwrap()
        .push((module.to_string(), r.clone()));
    r
}

/// Whether python3 is installed (for activities faultline runs through it).
pub fn check_python() -> Result<(), String> {
    if crate::sys::exec::find_program("python3").is_some() {
        Ok(())
    } else {
        Err("this activity runs through python3, which is not installed: install the Debian package `python3`".into())
    }
}
