"""Training a better model from the moderators' decisions (head, partial or full fine-tune)."""
