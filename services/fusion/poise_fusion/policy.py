"""Policy profiles per tenant: what may feed a competency score and what a scorecard must carry.

- ``default``: what was said, how it was said (voice) and facial behaviour may feed scores.
- ``eu``: EU AI Act Art. 5(1)(f) forbids emotion recognition in recruitment, so face and voice
  measurements never feed a score nor serve as a competency's evidence; scores rest on what
  was said. The measurements stay in the answers' signals as observable behaviour.
- ``us-nyc``: NYC Local Law 144: the scorecard carries the candidate notice (what is assessed,
  the data used and its sources, retention, how to ask for an alternative process, the
  published audit summary), from the tenant's notice settings.
- ``us-il``: Illinois AI Video Interview Act: no analysis without the candidate's recorded consent.

A tenant without stored settings has ``fusion.default_policy``. Lookups are cached for a few
seconds, so a change reaches every process without a restart.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.orm import sessionmaker

from poise_common.db.models import TenantSettings
from poise_common.messages import Consent
from poise_fusion.framework import GROUP_MODALITY, FeatureWeight, Framework

# What the candidate notice says each kind of data is.
DATA_KINDS = {
    "content": "what was said: the transcript of the answers",
    "voice": "how it was said: pauses, pace, pitch and loudness of the voice",
    "face": "facial behaviour on camera: eye contact, smiles, brow raises, head movement",
}
DEFAULT_DATA_SOURCES = "the candidate's recorded video answers to the interview questions"
REQUIRED_NOTICE_FIELDS = ("alternative_process_contact", "retention", "audit_summary_url")
CACHE_S = 5.0
TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class PolicyProfile:
    name: str
    summary: str
    modalities: frozenset[str]  # kinds of measurement that may feed a competency score
    episode_evidence: bool  # face and voice behaviour episodes may be a competency's evidence
    requires_notice: bool = False
    requires_consent: bool = False

    def feeds(self, spec: FeatureWeight) -> bool:
        # Both the declared modality and the group's must be allowed: a framework cannot relabel
        # a face measurement as content.
        group = spec.feature.partition(".")[0]
        return spec.modality in self.modalities and GROUP_MODALITY[group] in self.modalities

    @property
    def excluded_reason(self) -> str:
        """Why a competency measured only by kinds of data this profile keeps out has no score."""
        excluded = [m for m in ("face", "voice") if m not in self.modalities]
        return (
            f"the {self.name} policy keeps {' and '.join(excluded)} measurements out of scores, "
            "and this competency has no other"
        )


PROFILES: dict[str, PolicyProfile] = {
    "default": PolicyProfile(
        "default", "What was said, voice and facial behaviour may feed scores.",
        frozenset({"content", "voice", "face"}), episode_evidence=True,
    ),
    "eu": PolicyProfile(
        "eu", "EU AI Act: scores rest on what was said; face and voice are reported as behaviour only.",
        frozenset({"content"}), episode_evidence=False,
    ),
    "us-nyc": PolicyProfile(
        "us-nyc", "NYC Local Law 144: every scorecard carries the candidate notice.",
        frozenset({"content", "voice", "face"}), episode_evidence=True, requires_notice=True,
    ),
    "us-il": PolicyProfile(
        "us-il", "Illinois AI Video Interview Act: no analysis without the candidate's recorded consent.",
        frozenset({"content", "voice", "face"}), episode_evidence=True, requires_consent=True,
    ),
}
PROFILE_NAMES = tuple(PROFILES)


def get_profile(name: str) -> PolicyProfile:
    if name not in PROFILES:
        raise PolicyError(f"unknown policy {name!r}; known policies: {', '.join(PROFILE_NAMES)}")
    return PROFILES[name]


class Notice(BaseModel):
    """A tenant's candidate-notice data (NYC Local Law 144); us-nyc needs the first three fields."""

    model_config = ConfigDict(extra="forbid")

    alternative_process_contact: str | None = Field(
        None, min_length=1, max_length=500,
        description="How a candidate asks for an alternative selection process or an accommodation (email, URL).",
    )
    retention: str | None = Field(
        None, min_length=1, max_length=500, description="How long the recordings and the scorecard are kept.",
    )
    audit_summary_url: str | None = Field(
        None, max_length=2048, description="http(s) URL of the published summary of the latest bias audit.",
    )
    data_sources: str | None = Field(
        None, min_length=1, max_length=500, description=f"Where the data comes from; unset: {DEFAULT_DATA_SOURCES}.",
    )
    notice_version: str | None = Field(
        None, min_length=1, max_length=128, description="Version of the notice text candidates are shown.",
    )

    @field_validator("audit_summary_url")
    @classmethod
    def _web_address(cls, url: str | None) -> str | None:
        parsed = urlparse(url or "")
        if url is not None and (parsed.scheme not in ("http", "https") or not parsed.netloc):
            raise ValueError("must be an http:// or https:// URL with a host")
        return url


def validate_notice(data: dict | Notice | None) -> dict | None:
    """The notice as stored: validated, unset fields left out; None when empty."""
    if data is None:
        return None
    try:
        notice = data if isinstance(data, Notice) else Notice.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'notice'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise PolicyError(f"invalid notice: {problems}") from None
    return notice.model_dump(exclude_none=True) or None


@dataclass(frozen=True)
class TenantPolicy:
    """A tenant's profile and notice as they apply now."""

    tenant: str
    profile: PolicyProfile
    notice: dict | None = None
    stored: bool = False  # False: no settings stored, fusion.default_policy applies
    updated_at: float | None = None

    @property
    def name(self) -> str:
        return self.profile.name

    def require_notice(self) -> None:
        """PolicyError when the profile needs a candidate notice and fields of it are missing."""
        missing = [f for f in REQUIRED_NOTICE_FIELDS if not (self.notice or {}).get(f)]
        if self.profile.requires_notice and missing:
            raise PolicyError(
                f"the {self.name} policy needs the candidate notice's {', '.join(missing)} "
                f"(poise tenants set-policy {self.tenant} {self.name} --notice FILE.yaml, or PUT /v1/tenant/settings)"
            )

    def consent_refusal(self, consent: Consent | dict | None) -> str | None:
        """Why an interview with ``consent`` (None: not recorded) may not be analysed, or None."""
        if self.profile.requires_consent and not consent:
            return f"the {self.name} policy needs the candidate's consent before analysis, and none was recorded"
        return None

    def candidate_notice(self, framework: Framework) -> dict | None:
        """The notice a scorecard carries (us-nyc), or None for profiles that need none."""
        if not self.profile.requires_notice:
            return None
        stored = self.notice or {}
        used = {f.modality for c in framework.competencies for f in c.features if self.profile.feeds(f)}
        return {
            "assessed": [{"name": c.name, "label": c.label} for c in framework.competencies],
            "data_used": [DATA_KINDS[m] for m in DATA_KINDS if m in used],
            "data_sources": stored.get("data_sources", DEFAULT_DATA_SOURCES),
            "retention": stored.get("retention"),
            "alternative_process_contact": stored.get("alternative_process_contact"),
            "audit_summary_url": stored.get("audit_summary_url"),
            "notice_version": stored.get("notice_version"),
        }

    def view(self) -> dict:
        return {"tenant": self.tenant, "policy": self.name, "notice": self.notice, "stored": self.stored,
                "updated_at": self.updated_at}


KEEP = object()  # set(): leave the stored notice as it is


class TenantPolicyStore:
    """Tenants' policy settings on the ``tenant_settings`` table, with a short read cache."""

    def __init__(
        self, sessions: sessionmaker, default_policy: str = "default", ttl_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.default = get_profile(default_policy)
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, TenantPolicy]] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str) -> TenantPolicy:
        now = self.clock()
        with self._lock:
            cached = self._cache.get(tenant)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self._read(tenant)
        with self._lock:
            self._cache[tenant] = (now + self.ttl_s, found)
        return found

    def resolve(self, tenant: str, override: str | None = None) -> TenantPolicy:
        """The tenant's policy, or ``override``'s profile with the tenant's notice (a one-off run)."""
        found = self.get(tenant)
        return found if override is None else replace(found, profile=get_profile(override))

    def _read(self, tenant: str) -> TenantPolicy:
        with self.sessions() as session:
            row = session.get(TenantSettings, tenant)
            if row is None:
                return TenantPolicy(tenant, self.default)
            # A profile this version does not know (written by a newer one) fails loudly, not open.
            return TenantPolicy(tenant, get_profile(row.policy), row.notice, True, row.updated_at)

    def set(self, tenant: str, policy: str, notice: dict | Notice | None | object = KEEP) -> TenantPolicy:
        """Store the tenant's profile (and notice, unless KEEP); refuses a us-nyc without its notice."""
        if not TENANT.fullmatch(tenant):
            raise PolicyError("a tenant name is 1-64 letters, digits, '-' or '_'")
        profile = get_profile(policy)
        new_notice = None if notice is KEEP else validate_notice(notice)
        with self.sessions.begin() as session:
            row = session.get(TenantSettings, tenant)
            if notice is KEEP:
                new_notice = row.notice if row is not None else None
            result = TenantPolicy(tenant, profile, new_notice, True, time.time())
            result.require_notice()
            if row is None:
                row = TenantSettings(tenant=tenant)
                session.add(row)
            row.policy, row.notice, row.updated_at = policy, new_notice, result.updated_at
        with self._lock:
            self._cache.pop(tenant, None)
        return result
