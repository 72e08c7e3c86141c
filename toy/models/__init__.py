"""The tiny offline models the CPU stack runs on (no model hub exists here), built from the toy task.

``toy.models.build.ensure_tiny_models(out_dir, seed)`` writes, deterministically from ``seed``:

    out_dir/
      policy/           LlamaForCausalLM, 0.6M params, SFT'd on the toy task (toy.task)
      labeler/          3.2M-param LlamaForCausalLM trained to grade toy responses like the rule
      reward_backbone/  a copy of the SFT policy, the backbone for reward-model training
      build_report.json what was built and how good it is (labeler correlation, ...)
      .complete         hash of the builder's inputs; written last

Every model folder also holds the same byte-level BPE tokenizer (``<pad>`` 0, ``<s>`` 1,
``</s>`` 2; encoding prepends ``<s>``) in HF format, so each folder loads with plain
``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained(folder)`` and with vLLM.

Shapes are Llama with head_dim 64, because vLLM on CPU only supports head_dim 64 or 128.

Formats the models were trained on (what callers must feed them):

- policy: ``<s>`` + prompt + response + ``</s>``, the response starting with a space
  (``"Tell me about the sea." → " The sea is warm and grey."``). Feed the raw prompt.
- labeler: ``<s>`` + ``build_direct_prompt(prompt, response)`` + candidate + ``</s>`` with
  the candidate ``" 1"``..``" 10"`` = ``rule_label(response)``; and (a quarter of the data)
  ``build_pairwise_prompt(prompt, a, b)`` + ``"1"``/``"2"`` (the rule's preference). Base
  preamble, generic task, no exemplars. Responses were shown both stripped and with the
  policy's leading space, so either works.

The modules, in the order a build uses them:

- ``data``: the training texts (the policy's SFT pairs, the labeler's graded examples);
- ``tokenizer``: the BPE tokenizer trained on those texts;
- ``train``: the two Llama shapes, their optimisation plans and the training loop;
- ``evaluate``: the build report's numbers (labeler agreement with the rule, the SFT policy);
- ``build``: one build end to end, its cache stamp, the cached entry point and the CLI.
"""
