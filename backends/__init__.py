"""The backends that ship with deploy-sdk, registered through the same entry points as any plugin."""
