"""Token index: for every DFA state, the allowed token ids and the state each leads to.

Computed by walking the vocabulary trie from every state at once, breadth first: the frontier
is a set of (start state, trie node, current DFA state) triples, each level expands every
triple to the node's children and steps the DFA by the child's byte, and triples whose DFA
state dies are dropped at once (so a state that allows few bytes touches few trie nodes).
Tokens ending at a surviving node are allowed from the start state and lead to the current
state. The whole vocabulary is never scanned per state; the work is the number of
(state, trie node) pairs whose byte path stays alive, done in numpy a level at a time.

After the walk, states from which no token sequence reaches an accepting state are pruned
(edges into them removed), and EOS is added in accepting states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgnb.constrained.errors import ConstraintError
from sgnb.constrained.regex_dfa import ByteDFA, reach
from sgnb.constrained.vocab import TokenVocab, VocabTrie

# Upper bound on (state, trie node) pairs one walk chunk may visit (bounds peak memory).
_WALK_BUDGET = 3_000_000
_MASK21 = (1 << 21) - 1  # states and token ids below 2M pack into one int64 sort key


@dataclass(frozen=True, slots=True)
class TokenIndex:
    """CSR map state -> sorted allowed token ids and their next states.

    token_ids[state_ptr[s]:state_ptr[s + 1]] are the ids allowed in state s (sorted, EOS
    included iff s is accepting, with next state s); next_states is parallel to token_ids.
    max_token_len[s] is the longest allowed non-EOS token in bytes (0 if none).
    """

    state_ptr: np.ndarray  # [num_states + 1] int64
    token_ids: np.ndarray  # [num_edges] int32
    next_states: np.ndarray  # [num_edges] int32
    max_token_len: np.ndarray  # [num_states] int32
    live: np.ndarray  # [num_states] bool: some token sequence reaches an accepting state


def _walk_chunk(transitions: np.ndarray, node_class: np.ndarray, trie: VocabTrie,
                starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start state, token id, end state) for every token allowed from each of `starts`."""
    num_classes = transitions.shape[1]
    flat = transitions.reshape(-1)  # [num_states * num_classes]
    first_child, num_children = trie.first_child, trie.num_children
    token_count, single_token = trie.token_count, trie.single_token
    out_src, out_tok, out_dst = [], [], []
    src = starts.astype(np.int32)  # [frontier] start state of each triple
    node = np.zeros(starts.size, dtype=np.int32)  # [frontier] trie node
    state = src.copy()  # [frontier] DFA state after the node's bytes
    while node.size:
        counts = num_children[node]
        total = int(counts.sum())
        if total == 0:
            break
        shift = np.repeat(first_child[node] - (np.cumsum(counts, dtype=np.int32) - counts), counts)
        child = np.arange(total, dtype=np.int32) + shift  # [total] every child of every frontier node
        child_state = flat[np.repeat(state * num_classes, counts) + node_class[child]]
        alive = child_state >= 0
        child, child_state, child_src = child[alive], child_state[alive], np.repeat(src, counts)[alive]

        num_tokens = token_count[child]
        has_token = num_tokens > 0
        if trie.max_tokens_per_node == 1:
            out_tok.append(single_token[child[has_token]])
            out_src.append(child_src[has_token])
            out_dst.append(child_state[has_token])
        elif has_token.any():  # several token ids share these bytes
            num = num_tokens[has_token]
            pick = np.repeat(np.arange(num.size), num)
            first = trie.token_ptr[child[has_token]]
            position = np.repeat(first, num) + (np.arange(pick.size) - (np.cumsum(num) - num)[pick])
            out_tok.append(trie.node_tokens[position])
            out_src.append(child_src[has_token][pick])
            out_dst.append(child_state[has_token][pick])

        expand = num_children[child] > 0
        node, state, src = child[expand], child_state[expand], child_src[expand]
    if not out_tok:
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty, empty
    return (np.concatenate(out_src).astype(np.int32), np.concatenate(out_tok).astype(np.int32),
            np.concatenate(out_dst).astype(np.int32))


def _chunks(weight: np.ndarray) -> list[np.ndarray]:
    """Consecutive state ranges whose walk work stays within _WALK_BUDGET."""
    bounds = [0]
    total = 0.0
    for state, w in enumerate(weight.tolist()):
        if total and total + w > _WALK_BUDGET:
            bounds.append(state)
            total = 0.0
        total += w
    bounds.append(weight.size)
    return [np.arange(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def build_token_index(dfa: ByteDFA, vocab: TokenVocab, pattern: str) -> TokenIndex:
    """Index every DFA state; ConstraintError if no token sequence can complete the pattern."""
    trie = vocab.trie
    num_states = dfa.num_states
    node_class = dfa.byte_classes[trie.node_byte]  # [num_trie_nodes] byte class of the edge into each node
    root_children = np.arange(trie.first_child[0], trie.first_child[0] + trie.num_children[0])
    first_ok = dfa.transitions[:, node_class[root_children]] >= 0  # [num_states, num_root_children]
    weight = first_ok.astype(np.float64) @ trie.root_subtree_size.astype(np.float64)  # upper bound of work
    eos = np.array(vocab.eos_token_ids, dtype=np.int32)
    packable = num_states <= _MASK21 and vocab.vocab_size <= _MASK21

    srcs, toks, dsts = [], [], []
    for states in _chunks(weight):
        walked = states[weight[states] > 0]
        src, tok, dst = _walk_chunk(dfa.transitions, node_class, trie, walked) if walked.size else ((),) * 3
        accepting = states[dfa.accepting[states]].astype(np.int32)
        src = np.concatenate([src, np.repeat(accepting, eos.size)]).astype(np.int32)
        tok = np.concatenate([tok, np.tile(eos, accepting.size)]).astype(np.int32)
        dst = np.concatenate([dst, np.repeat(accepting, eos.size)]).astype(np.int32)
        if packable:  # one int64 sort instead of argsort + gathers: key = src | tok | dst
            key = np.sort((src.astype(np.int64) << 42) | (tok.astype(np.int64) << 21) | dst)
            src, tok, dst = (key >> 42).astype(np.int32), ((key >> 21) & _MASK21).astype(np.int32), (key & _MASK21).astype(np.int32)
        else:
            order = np.argsort(src.astype(np.int64) * vocab.vocab_size + tok)  # (state, token) pairs are unique
            src, tok, dst = src[order], tok[order], dst[order]
        srcs.append(src)
        toks.append(tok)
        dsts.append(dst)
    src, tok, dst = np.concatenate(srcs), np.concatenate(toks), np.concatenate(dsts)

    # Token-level liveness: drop tokens that lead to states no token sequence can finish from.
    # When every byte the DFA uses is itself a token, every byte-live state is token-live.
    used_bytes = (dfa.transitions >= 0).any(axis=0)[dfa.byte_classes]  # [256]
    if np.all(vocab.single_byte_tokens[used_bytes]):
        live = np.ones(num_states, dtype=bool)
    else:
        pairs = np.unique(src.astype(np.int64) * num_states + dst)
        live = reach(pairs % num_states, pairs // num_states, num_states, np.flatnonzero(dfa.accepting))
        if not live[dfa.initial]:
            raise ConstraintError(
                f"no sequence of tokens in the vocabulary can complete {pattern!r} "
                "(every path to an accepting state needs bytes no allowed token provides)"
            )
        keep = live[dst]
        src, tok, dst = src[keep], tok[keep], dst[keep]

    state_ptr = np.zeros(num_states + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=num_states), out=state_ptr[1:])
    lengths = vocab.token_lengths[tok]
    max_token_len = np.zeros(num_states, dtype=np.int32)
    nonempty = state_ptr[1:] > state_ptr[:-1]
    if lengths.size:
        max_token_len[nonempty] = np.maximum.reduceat(lengths, state_ptr[:-1][nonempty])
    return TokenIndex(state_ptr=state_ptr, token_ids=tok, next_states=dst, max_token_len=max_token_len, live=live)
