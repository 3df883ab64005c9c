"""The shape every tdviz model shares: trunk -> last stage (re-run per computation step) -> head."""

from __future__ import annotations

from torch import Tensor, nn

from .td import is_stepped_block

__all__ = ["SteppedModel", "is_stepped_block", "model_num_classes"]




def model_num_classes(model: nn.Module) -> int | None:
    """Classes a model scores: ``num_classes`` of tdviz's models, else ``None`` (unknown)."""
    try:
        return int(model.num_classes)
    except (AttributeError, TypeError, NotImplementedError):
        return None


class SteppedModel(nn.Module):
    """Base class of tdviz's backbones.

    Subclasses split their forward into ``forward_trunk`` (run once), ``stage_blocks`` (the last
    stage, whose TD blocks run with t = 1..T steps, as the authors' ``output_over_t``) and
    ``forward_head``. ``forward`` is the default T-step output.
    """

    def forward_trunk(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def stage_blocks(self) -> list[nn.Module]:
        raise NotImplementedError

    def forward_head(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def get_classifier(self) -> nn.Linear:
        """The final linear layer (timm's name for it)."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes the model scores."""
        return self.get_classifier().out_features

    @property
    def num_steps(self) -> int:
        """Computation steps seen at the output: the largest T among the last stage's TD blocks."""
        return max([b.td_steps for b in self.stage_blocks() if is_stepped_block(b)], default=1)

    def forward_stage(self, x: Tensor, steps: int | None = None) -> Tensor:
        """Run the last stage with its TD blocks at ``steps`` (default: their own T)."""
        for block in self.stage_blocks():
            if is_stepped_block(block):
                x = block(x, steps=None if steps is None else min(steps, block.td_steps))
            else:
                x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_stage(self.forward_trunk(x)))
