"""What every stage shares and that knows nothing of images, plans or training: the error type users act on and
the registries that name extension points (networks, losses, trainer variants, augmentation pipelines) and load
third-party plugins. Modules here import nothing from the rest of autoseg."""
