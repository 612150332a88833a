"""Who the daemon's policy applies are by: the author of the policy directory's HEAD commit.

When the policy directory is a git checkout, the daemon applies what someone committed; the
audit log names that person (``Name <email>`` of ``git log -1``) and the commit, instead of the
daemon. Anywhere else (not a checkout, git missing or failing) the actor is ``daemon``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DAEMON = "daemon"
GIT_TIMEOUT = 10.0


@dataclass(frozen=True)
class PolicyAuthor:
    """The actor of a daemon apply and what the audit row says of the commit."""

    actor: str = DAEMON
    details: dict[str, str] = field(default_factory=dict)


def policy_author(policy_dir: Path) -> PolicyAuthor:
    """The author of `policy_dir`'s HEAD commit when it is in a git checkout, else ``daemon``."""
    try:
        done = subprocess.run(
            ["git", "-C", str(policy_dir), "log", "-1", "--format=%H%n%an <%ae>"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # git missing, or hung
        return PolicyAuthor()
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) < 2 or not lines[1].strip():
        return PolicyAuthor()  # not a checkout, or a repository without commits
    return PolicyAuthor(lines[1].strip(), {"commit": lines[0].strip(), "applied_by": DAEMON})
