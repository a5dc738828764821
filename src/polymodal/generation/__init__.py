"""Task generation (captioning, translation): target vocabulary, sequence decoders, greedy and beam search."""

from polymodal.generation.decoders import GRUDecoder, Memory, SequenceHead, TransformerDecoder, build_sequence_head
from polymodal.generation.search import beam_search, greedy
from polymodal.generation.task import Generation
from polymodal.generation.vocabulary import BOS_ID, EOS_ID, PAD_ID, TargetVocabulary

__all__ = ["BOS_ID", "EOS_ID", "GRUDecoder", "Generation", "Memory", "PAD_ID", "SequenceHead", "TargetVocabulary",
           "TransformerDecoder", "beam_search", "build_sequence_head", "greedy"]
