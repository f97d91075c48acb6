"""Domain adaptation as components: plain ``nn.Module``s any task with features plugs in.

A task takes ``adaptation:`` (one method, a list of them, or ``null`` for source-only),
binds each method to its feature width and number of classes, and adds their losses,
each weighted and ramped by training progress, to its own:

=========================  ==========================================================
:class:`DomainAdversarial`  gradient reversal + domain discriminator (DANN, 2015)
:class:`CDAN`               discriminator on features x predictions (Long et al. 2018)
:class:`CORAL`              align feature covariances (Sun & Saenko 2016)
:class:`MMD`                multi-kernel maximum mean discrepancy (DAN, Long et al. 2015)
:class:`MinimumClassConfusion`  off-diagonal class correlation (MCC, Jin et al. 2020)
:class:`RealSampleTerms`    entropy, diversity and pseudo-label consistency on real samples
=========================  ==========================================================
"""

from lightning_synth.adaptation.adversarial import (
    DomainAdversarial,
    balanced_domain_accuracy,
    balanced_domain_loss,
)
from lightning_synth.adaptation.base import (
    AdaptationInputs,
    AdaptationMethod,
    AdaptationOutput,
    Schedule,
    domain_samples,
)
from lightning_synth.adaptation.cdan import CDAN, multilinear_map
from lightning_synth.adaptation.coral import CORAL, coral_loss
from lightning_synth.adaptation.mcc import MinimumClassConfusion, class_confusion
from lightning_synth.adaptation.mmd import MMD, mk_mmd
from lightning_synth.adaptation.real_samples import (
    RealSampleTerms,
    marginal_entropy,
    mean_entropy,
)

__all__ = ["AdaptationInputs", "AdaptationMethod", "AdaptationOutput", "Schedule"]
__all__ += ["DomainAdversarial", "CDAN", "CORAL", "MMD", "MinimumClassConfusion"]
__all__ += ["RealSampleTerms", "domain_samples", "balanced_domain_loss"]
__all__ += ["balanced_domain_accuracy", "multilinear_map", "coral_loss", "mk_mmd"]
__all__ += ["class_confusion", "mean_entropy", "marginal_entropy"]
