"""`riskwatch demo` runs to completion on a fresh data dir, stores everything it sent, and notifies its incident."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from core import accounts
from core.services import LocalServices

RISKWATCH = str(Path(sys.executable).parent / "riskwatch")


def test_demo_runs_to_completion(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    env["RISKWATCH_DATA_DIR"] = str(tmp_path / "rw")
    env["COLUMNS"] = "160"
    try:
        res = subprocess.run([RISKWATCH, "demo", "--duration", "25", "--rate", "5"], env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        m = re.search(r"([\d,]+) 条读数入库 readings stored of ([\d,]+) sent; (\d+) 条死信", res.stdout)
        assert m, res.stdout
        stored, sent = int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
        assert sent >= 25 * 5 * 40 and stored == sent
        assert int(m.group(3)) == 2  # the two malformed examples the demo sends on purpose
        assert "TT-101" in res.stdout and "最新读数" in res.stdout
        # the incident (cooling-water leak while powered) and what it raised
        assert "mach.cooling.diff:hi" in res.stdout and "mach.cooling.interlock" in res.stdout
        cand = res.stdout.split("candidate major hazards", 1)[1]
        assert "mach.cooling.interlock" in cand and "第七条" in cand
        ledger = res.stdout.split("hazard ledger: candidate tickets opened by the incident", 1)[1]
        assert "待判定 candidate" in ledger and "鼎业铸造" in ledger and "第七条" in ledger
        # its notifications, delivered for real to the demo's local SMTP sink and webhook receiver
        m = re.search(r"收到邮件 e-mails received\s*│\s*([\d,]+)", res.stdout)
        assert m and int(m.group(1).replace(",", "")) >= 1, res.stdout
        notices = res.stdout.split("notices received by the local sinks", 1)[1]
        incident = r"(熔炼炉冷却水|冷却水报警时熔炼炉未断电)"  # the rules' and the ticket's Chinese titles
        assert re.search(rf"^ +\d\d:\d\d:\d\d  邮件 email  \S+@example\.gov\.cn  【.*】.*{incident}", notices,
                         re.MULTILINE), notices
        assert "Webhook ✓签名 signed" in notices, notices
        assert (tmp_path / "rw" / "demo-alerting.yaml").exists()
        assert "Traceback" not in res.stderr and "ERROR" not in res.stderr
        # the console's address and a bureau and an enterprise login that really log in
        assert "控制台 web console: http://127.0.0.1:8080/console" in res.stdout
        logins = dict(re.findall(r"^ +(duty|chief|ent-\S+) +(\S+) +", res.stdout, re.MULTILINE))
        assert {"duty", "chief"} <= set(logins) and any(u.startswith("ent-") for u in logins), res.stdout
        with psycopg.connect(LocalServices(tmp_path / "rw").db_url) as conn:
            for user, password in logins.items():
                assert accounts.login(conn, user, password, "127.0.0.1", time.time()).session_id, user
        # the plants stop at the end: what follows if nobody files a stop
        assert "若不报备停产（停产报备）" in res.stdout and "POST /api/v1/stops" in res.stdout
    finally:
        LocalServices(tmp_path / "rw").destroy()
