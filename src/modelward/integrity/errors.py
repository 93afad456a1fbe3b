"""Errors raised by hashing, signing and verification, each with a message a user can act on."""

from __future__ import annotations

from modelward.errors import ModelwardError


class IntegrityError(ModelwardError):
    """Base class: anything that stops a hash, a signature or a verification."""


class ModelPathError(IntegrityError):
    """The model path cannot be hashed as asked: missing, special file, refused symlink."""


class KeyMaterialError(IntegrityError):
    """A key or certificate cannot be read or is of a type that cannot be used."""


class BundleError(IntegrityError):
    """A signature bundle is malformed, tampered with, or of an unsupported kind."""


class SignatureError(IntegrityError):
    """A well-formed bundle whose signature does not verify with the given key or chain."""


class SymlinkError(ModelPathError):
    """A symlink was refused: links not allowed, or one resolving outside the model."""
