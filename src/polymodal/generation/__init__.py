"""Task generation (captioning, translation): sequence decoders, greedy and beam search, the target vocabulary
(`generation.vocabulary`, which needs the tokenizers package: import it from there)."""

from polymodal.generation.decoders import GRUDecoder, Memory, SequenceHead, TransformerDecoder, build_sequence_head
from polymodal.generation.search import beam_search, greedy
from polymodal.generation.tokens import BOS_ID, EOS_ID, PAD_ID

__all__ = ["BOS_ID", "EOS_ID", "GRUDecoder", "Memory", "PAD_ID", "SequenceHead", "TransformerDecoder", "beam_search",
           "build_sequence_head", "greedy"]
