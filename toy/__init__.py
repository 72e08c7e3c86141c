"""The toy world: a test and demo fixture, not part of the product.

- ``toy.task``: the "bright words" task (prompts, the hidden ``rule_score``, the responses
  the labeler is trained on, the policy's SFT pairs).
- ``toy.pairs``: toy preference pairs with the rule's winner as the "human" label.
- ``toy.models``: builds the tiny policy, labeler and reward backbone trained on that task,
  deterministically and cached (``rlaif-ray make-tiny-models``).

The CPU tests, the example ``configs/*-toy.yaml``, ``configs/local.yaml`` and the benches run
on it. The library (``rlaif_ray``, ``actors``, ``jobs``) never imports it: only the CLI's
toy verbs (``make-tiny-models``, ``make-toy-pairs``) load it, on demand; a config names the
toy reward by its path, ``toy.task:rule_score``.
"""
