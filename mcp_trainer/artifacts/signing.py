"""Model signatures: a saved model is loaded only if this installation signed it.

A scikit-learn model is saved as a pickle, and loading a pickle runs whatever code it names. The sha256 in
`metadata.json` catches a damaged file but not a replaced one: whoever can write the file can write the
hash beside it. So the hashes of a model's files are signed with an HMAC whose key lives outside
`trained_models/` (by default `<queue>/.model-signing-key`, mode 0600, see secretfile.py), and a model is
loaded only when its signature verifies. Writing `trained_models/` is then not enough to make the server
run code; one would have to read the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mcp_trainer.secretfile import load_or_create_secret

__all__ = ["SIGNATURE_FIELD", "ModelSigner"]

SIGNATURE_FIELD = "signature"  # in metadata.json: hex HMAC-SHA256 of the model id and its files' hashes


@dataclass(frozen=True)
class ModelSigner:
    """Signs and checks models with the key in `key_file` (created on first use)."""

    key_file: Path

    def ensure(self) -> None:
        """Create the key if there is none; raises SecretFileError for a key file that cannot be trusted."""
        self._key()

    def _key(self) -> bytes:
        return load_or_create_secret(self.key_file, "model signing key").encode()

    def sign(self, model_id: str, hashes: Mapping[str, str]) -> str:
        """The signature of model `model_id` made of files with these sha256 `hashes` (name -> hex)."""
        message = json.dumps({"model_id": model_id, "files": dict(sorted(hashes.items()))}, sort_keys=True)
        return hmac.new(self._key(), message.encode(), hashlib.sha256).hexdigest()

    def verify(self, model_id: str, hashes: Mapping[str, str], signature: object) -> bool:
        return isinstance(signature, str) and hmac.compare_digest(self.sign(model_id, hashes), signature)
