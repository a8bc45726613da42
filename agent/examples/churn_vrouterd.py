"""vrouterd's side of endpoint churn alone (benches/RESULTS.md section 8):
N services x 10 backends as the agent shards them (64 `sync` scopes),
pipelined on one connection to a running vrouterd, then 50 single-service
changes one at a time.

python3 agent/examples/churn_vrouterd.py N /path/to/vrouterd.sock [CHANGES]
"""
import socket, json, sys, time
N=int(sys.argv[1]); E=10; S=64
sock=sys.argv[2] if len(sys.argv)>2 else "/tmp/churn-py/vr.sock"
K=int(sys.argv[3]) if len(sys.argv)>3 else 50
def ip(i):
    i%= 1<<17
    return "198.%d.%d.%d"%(18+(i>>16),(i>>8)&255,i&255)
scopes=[[] for _ in range(S)]
for s in range(N):
    scopes[s%S].append({"namespace":"bench","name":"svc%d/http"%s,"ips":["10.%d.%d.%d"%((s>>16)&255,(s>>8)&255,s&255)],"port":80,"protocol":"TCP",
      "backends":[{"ip":ip(s*E+e),"port":8080,"local":e%3==0} for e in range(E)]})
c=socket.socket(socket.AF_UNIX); c.connect(sock); f=c.makefile("rwb")
def call(o):
    f.write((json.dumps(o)+"\n").encode()); f.flush(); return json.loads(f.readline())
print(call({"id":1,"op":"hello","args":{"client":"py","version":1}}))
lines=[json.dumps({"id":100+i,"op":"sync","args":{"scope":"agent/services/%d"%i,"generation":1,"routes":[],"neighbors":[],"endpoints":[],"services":sc}}) for i,sc in enumerate(scopes)]
t=time.time()
for l in lines: f.write((l+"\n").encode())
f.flush()
ts=[]
for i in range(S):
    r=json.loads(f.readline()); ts.append(time.time()-t)
    if "error" in r: print(r); break
print("full sync %d services: %.0f ms; first ack %.0f ms, per-scope last 10: %s"%(N,(time.time()-t)*1e3, ts[0]*1e3, ["%.0f"%((ts[i]-ts[i-1])*1e3) for i in range(S-10,S)]))
# single change
lat=[]
for k in range(K):
    s=(k*7919)%N; i=s%S
    scopes[i]=[o if o["name"]!="svc%d/http"%s else dict(o,backends=o["backends"][1:]+[{"ip":ip(200000+k),"port":8080}]) for o in scopes[i]]
    l=json.dumps({"id":1000+k,"op":"sync","args":{"scope":"agent/services/%d"%i,"generation":2+k,"routes":[],"neighbors":[],"endpoints":[],"services":scopes[i]}})
    t=time.time(); r=call(json.loads(l)); lat.append((time.time()-t)*1e3)
    if "error" in r: print(r); break
lat.sort()
if lat: print("single change p50 %.1f ms max %.1f ms"%(lat[len(lat)//2], lat[-1]))
