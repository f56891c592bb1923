"""ppl-uq: compare probabilistic inference methods on the same models, for uncertainty quantification
and adversarial robustness.

    import jax, ppl_uq
    data = ppl_uq.data.make_spheres(jax.random.key(0), dim=50, num_train=200, num_val=1000)
    model = functools.partial(ppl_uq.models.squared_logistic, **data.model_kwargs)
    posterior = ppl_uq.fit("nuts", model, data.train, rng_key=jax.random.key(1))
"""

from . import data, models
from .inference import backends, default_options, fit
from .inference.pruning import prune_by_snr
from .posterior import Posterior, load_posterior

__version__ = "0.1.0"

__all__ = ["Posterior", "backends", "data", "default_options", "fit", "load_posterior", "models", "prune_by_snr"]
