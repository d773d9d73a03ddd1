"""Pretraining objectives: heads + loss, each composable with any encoder that can serve it."""
