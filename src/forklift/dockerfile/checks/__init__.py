"""Build checks (lint) for Dockerfiles: BuildKit's rules plus forklift's multi-stage rules.

Callers use ``run_checks(parsed, CheckOptions(...)) -> CheckReport``; ``RULES`` lists every rule.
"""

from forklift.dockerfile.checks.framework import CheckConfig, CheckOptions, Finding, Rule, parse_check_config
from forklift.dockerfile.checks.registry import RULES, RULES_BY_NAME, CheckReport, run_checks

__all__ = [
    "RULES",
    "RULES_BY_NAME",
    "CheckConfig",
    "CheckOptions",
    "CheckReport",
    "Finding",
    "Rule",
    "parse_check_config",
    "run_checks",
]
