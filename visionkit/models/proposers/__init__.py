"""Proposers: where a two-stage detector's regions come from, behind one interface
(:class:`Proposer`): the Region Proposal Network, learned with the detector (Faster R-CNN), and
proposals given with the images or found by selective search (Fast R-CNN, SPPNet, R-CNN)."""

from visionkit.models.proposers.base import ALL_PROPOSALS, Proposer
from visionkit.models.proposers.given import GivenProposals
from visionkit.models.proposers.rpn import RegionProposalNetwork

__all__ = ["ALL_PROPOSALS", "GivenProposals", "Proposer", "RegionProposalNetwork"]
