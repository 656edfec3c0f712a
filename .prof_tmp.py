import asyncio, time, statistics
from service.ingest import writer as W
from bench.ingest import run
stats=[]
orig=W.IngestWriter._write_batch
async def timed(self, batch):
    t=time.perf_counter()
    try:
        return await orig(self, batch)
    finally:
        fast = all(True for _ in batch)
        stats.append((len(batch), time.perf_counter()-t))
W.IngestWriter._write_batch=timed
orig_apply=W.IngestWriter._apply_in_savepoint
slow=[]
async def timed_apply(self, conn, webhook):
    t=time.perf_counter()
    try: return await orig_apply(self, conn, webhook)
    finally: slow.append(time.perf_counter()-t)
W.IngestWriter._apply_in_savepoint=timed_apply
if __name__ == '__main__':
    asyncio.run(run(3000, 32, 50, 0.05))
    sizes=[s for s,_ in stats]; durs=[d for _,d in stats]
    print("batches", len(stats), "mean size", statistics.mean(sizes), "max", max(sizes))
    print("batch dur p50 %.1fms p99 %.1fms total %.2fs" % (statistics.median(durs)*1e3, sorted(durs)[int(len(durs)*.99)]*1e3, sum(durs)))
    print("slow applies", len(slow), "p50 %.1fms p99 %.1fms total %.2fs" % (statistics.median(slow)*1e3, sorted(slow)[int(len(slow)*.99)]*1e3, sum(slow)))
