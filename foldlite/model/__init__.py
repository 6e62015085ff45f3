"""foldlite.model: the Haiku network (features -> frames, atoms and confidences).

Public API:
  ModelConfig, load_model_config  -- typed config from foldlite/configs/model/<name>.yaml
  make_model(cfg) -> hk.Transformed; apply(params, rng, features, num_recycles,
      is_training=False, chunk_size=None) -> ModelOutput
  heads: plddt_from_logits, pae_from_logits, ptm_from_logits and the bin constants
"""

from foldlite.model.config import ModelConfig, available_model_configs, load_model_config
from foldlite.model.heads import pae_from_logits, plddt_from_logits, ptm_from_logits
from foldlite.model.model import ModelOutput, make_model

__all__ = ["ModelConfig", "ModelOutput", "available_model_configs", "load_model_config",
           "make_model", "pae_from_logits", "plddt_from_logits", "ptm_from_logits"]
