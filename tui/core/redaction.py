"""Masking personal data (e-mail addresses, phone numbers, named arguments) before display or export."""

from __future__ import annotations

import re
from collections.abc import Iterable

from afirgen_tasks.settings import SecretScrubber

MASK = "***"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Phone-number candidates: +91 98765 43210, 098765-43210, (022) 2345 6789 ...; a candidate is
# masked only when it has 10-13 digits, so dates (2024-01-02) and ids (FIR-2024-0001) survive.
_PHONE = re.compile(r"(?<![\w.-])\+?\(?\d[\d\s().-]{6,}\d(?![\w.-])")


def _mask_named(m: re.Match[str]) -> str:
    value = m.group(6)
    masked = f'"{MASK}"' if value.startswith('"') else f"'{MASK}'"  # keep JSON valid JSON
    if m.group(2) is not None:  # quoted key and a colon
        return f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{masked}"
    return f"{m.group(4)}{m.group(5)}{masked}"


def _mask_phone(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return MASK if 10 <= digits <= 13 else match.group(0)


class Redactor:
    """Masks what the [redact] settings name in argument and result text.

    ``arg_names`` mask a keyword argument's value (``'recipient_email': '***'``); e-mail
    addresses and phone numbers are masked anywhere when enabled; ``patterns`` are extra
    regular expressions.  Masking is applied to the *text* the console shows or exports.
    """

    def __init__(
        self,
        arg_names: Iterable[str] = (),
        emails: bool = True,
        phones: bool = True,
        patterns: Iterable[str] = (),
        secrets: Iterable[str] = (),
    ):
        self._names = frozenset(n for n in arg_names if n)
        names = [re.escape(n) for n in arg_names if n]
        # 'email': 'x' / "email": "x" (reprs, JSON) or email='x' (keyword arguments); a bare
        # "email: text" is prose (an outcome message, a queue name), not an argument.
        alternatives = "|".join(names)
        self._named = (
            re.compile(
                r"""(?:(['"])("""
                + alternatives
                + r""")\1(\s*:\s*)|\b("""
                + alternatives
                + r""")(\s*=\s*))"""
                r"""('[^']*'|"[^"]*"|[^,)}\]\s]+)"""
            )
            if names
            else None
        )
        self._regexes = [re.compile(p) for p in patterns]
        if emails:
            self._regexes.append(_EMAIL)
        self._phones = phones
        #: URL passwords and the settings' secrets: the same scrubber as ``--check``
        self._scrub = SecretScrubber(secrets)

    def value(self, obj: object) -> object:
        """Redact every string inside ``obj`` (dicts by key name too), keeping its structure."""
        if isinstance(obj, str):
            return self(obj)
        if isinstance(obj, dict):
            return {
                k: (MASK if isinstance(k, str) and k in self._names else self.value(v))
                for k, v in obj.items()
            }
        if isinstance(obj, (list, tuple)):
            return [self.value(v) for v in obj]
        return obj

    def scrub_secrets(self, text: str) -> str:
        """Only the secrets (passwords) masked: for text that must stay machine-readable."""
        return self._scrub(text)

    @classmethod
    def from_settings(cls, settings) -> Redactor:  # noqa: ANN001 - afirgen_tasks.settings.Settings
        """A redactor configured by ``settings`` (which also supplies its secrets to scrub)."""
        return cls(
            settings.redact_arg_names,
            settings.redact_emails,
            settings.redact_phones,
            settings.redact_patterns,
            settings.secrets(),
        )

    def __call__(self, text: str | None) -> str:
        """``text`` with every configured item masked."""
        if not text:
            return text or ""
        text = self._scrub(text)
        if self._named is not None:
            text = self._named.sub(_mask_named, text)
        for rx in self._regexes:
            text = rx.sub(MASK, text)
        if self._phones:
            text = _PHONE.sub(_mask_phone, text)
        return text
