"""Metrics: functions from model outputs and ground truth to per-item scores."""
