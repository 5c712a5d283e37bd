"""Pods: containers that share one network, IPC and UTS namespace, held open by an
infra container (records.py: the pod table; infra.py: the infra image; service.py: the
pod state machine over the container service; members.py: what `create --pod` does)."""
