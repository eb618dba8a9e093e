"""What the commands and the attention study show a person: attention tables and heat-maps, and the study's
measures (BLEU by length, entropy, diagonal mass, paired significance)."""
